"""What a role named for the application or the probe is and belongs to: a role that could take
more than its column of the roles table allows (a superuser, BYPASSRLS, a member of the owner, of
the other role or of a role that reads or writes every table) is refused before anything is
applied: an attribute or a membership is the administrator's to revoke, not the owner's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import asyncpg

from migrator.role_errors import RoleRefused
from migrator.role_policy import DATA_ROLES
from migrator.settings import Named
from schema.live import NAMESPACE
from schema.quoting import quote_ident

MEMBERSHIP_ADVICE: Final = (
    "with SET it can become that role and with INHERIT it holds that role's privileges (either is "
    "enough; `up` refuses any membership)"
)

MEMBERSHIPS_QUERY: Final = """
WITH named AS (
  SELECT r.role, g.oid, g.rolsuper, g.rolbypassrls
  FROM json_to_recordset($1::json) AS r(role text) JOIN pg_catalog.pg_roles g ON g.rolname = r.role
),
targets AS (
  SELECT g.oid, g.rolname::text AS name, t.why FROM (
    SELECT current_user::text AS name,
           'the role the migrator connects as, which owns the tables and the ledger' AS why
    UNION ALL
    SELECT pg_get_userbyid(n.nspowner)::text, format('the owner of schema %I', n.nspname)
    FROM pg_catalog.pg_namespace n WHERE n.nspname = $2
    UNION ALL
    SELECT d.name, d.why FROM json_to_recordset($3::json) AS d(name text, why text)
    UNION ALL
    SELECT rolname::text, 'a superuser role' FROM pg_catalog.pg_roles WHERE rolsuper
    UNION ALL
    SELECT rolname::text, 'a BYPASSRLS role' FROM pg_catalog.pg_roles WHERE rolbypassrls AND NOT rolsuper
    UNION ALL
    SELECT role, 'the other role `up` grants to' FROM named
  ) t JOIN pg_catalog.pg_roles g ON g.rolname = t.name
)
SELECT n.role, n.rolsuper AS superuser, n.rolbypassrls AS bypassrls, t.name AS target, t.why,
       (SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m
        WHERE m.member = n.oid AND (m.roleid = t.oid OR pg_has_role(m.roleid, t.oid, 'MEMBER'))
        ORDER BY m.roleid = t.oid DESC LIMIT 1) AS through,
       current_user::text AS me, current_database()::text AS database
FROM named n
-- A superuser is a "member" of every role: its attribute is the one thing to report.
LEFT JOIN targets t ON t.oid <> n.oid AND NOT n.rolsuper AND pg_has_role(n.oid, t.oid, 'MEMBER')
"""


async def refuse_unsafe_roles(conn: asyncpg.Connection, named: Sequence[Named]) -> None:
    """RoleRefused (exit 2) when a named role is a superuser, has BYPASSRLS, or is a member
    (directly or not, with or without INHERIT) of a role that holds more than its column allows."""
    if not named:
        return
    roles = json.dumps([{"role": n.role} for n in named])
    data_roles = json.dumps([{"name": name, "why": why} for name, why in DATA_ROLES.items()])
    rows = await conn.fetch(MEMBERSHIPS_QUERY, roles, NAMESPACE, data_roles)
    problems: list[str] = []
    for n in named:
        mine = [row for row in rows if row["role"] == n.role]
        problems += attribute_problems(n, mine[0])
        seen: set[str] = set()
        for row in mine:
            if row["target"] is not None and row["target"] not in seen:
                seen.add(row["target"])
                problems.append(membership_problem(n, row))
    if problems:
        raise RoleRefused(problems, changed=False)


def attribute_problems(n: Named, row: asyncpg.Record) -> list[str]:
    found = []
    if row["superuser"]:
        found.append(
            f"{n.shown} is a superuser, which bypasses every privilege check: as an administrator run "
            f"`ALTER ROLE {quote_ident(n.role)} NOSUPERUSER;`"
        )
    if row["bypassrls"]:
        found.append(
            f"{n.shown} has BYPASSRLS, so no row-level security policy would apply to it: as an "
            f"administrator run `ALTER ROLE {quote_ident(n.role)} NOBYPASSRLS;`"
        )
    return found


def membership_problem(n: Named, row: asyncpg.Record) -> str:
    target, through = row["target"], row["through"]
    if through is None:  # pg_database_owner's one member is implicit: the database's owner
        return (
            f"{n.shown} owns database {row['database']} and so is a member of {target} ({row['why']}): "
            f"as an administrator run `ALTER DATABASE {quote_ident(row['database'])} OWNER TO "
            f"{quote_ident(row['me'])};`"
        )
    via = "" if through == target else f" through {through}"
    return (
        f"{n.shown} is a member of {target} ({row['why']}){via}; {MEMBERSHIP_ADVICE}: as an "
        f"administrator run `REVOKE {through} FROM {quote_ident(n.role)};`"
    )
