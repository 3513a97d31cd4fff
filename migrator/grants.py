"""What `up` grants: the application role DML on the application's tables and use of its types
and sequences, the probe role read access to the ledger; and nothing else to either (what it takes
back is in migrator/extra_privileges.py, the roles it refuses in migrator/role_memberships.py,
both read against migrator/role_policy.py's table).

Two mechanisms, on purpose. ALTER DEFAULT PRIVILEGES makes every table, sequence and type the
migrator's role creates in the schema carry the application's grants from the moment it exists,
inside the migration's own transaction: when the ledger row that `kata-migrate wait` watches
commits, the grants are already there. Explicit GRANTs, computed from the catalog before and after
the files run, cover what default privileges cannot: objects that existed before the roles were
configured (a baseline schema, an earlier release) and objects another role created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.events import EventLog
from migrator.extra_privileges import default_revocations, extras, refuse_unfixable, revocations
from migrator.limits import to_ms
from migrator.privileges import Missing, denied
from migrator.role_errors import RoleMissing
from migrator.role_memberships import refuse_unsafe_roles
from migrator.role_policy import DML
from migrator.settings import APP_SETTING, PROBE_SETTING, Roles
from schema.ledger import TABLE
from schema.live import NAMESPACE
from schema.quoting import quote_ident

TABLE_PRIVILEGES: Final = DML


ROLES_QUERY: Final = """
SELECT current_user AS me, r.name, EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) AS found
FROM unnest($1::text[]) AS r(name)
"""


async def check_roles(conn: asyncpg.Connection, roles: Roles, log: EventLog) -> None:
    """Before the lock: each named role exists, is not the migrator's own, and is safe to give its
    column of the roles table (role_policy); says once when unset."""
    unset = [s for s, role in ((APP_SETTING, roles.app), (PROBE_SETTING, roles.probe)) if role is None]
    if unset:
        log.info(
            "grants_skipped",
            f"{' and '.join(unset)} unset: `up` grants nothing to "
            f"{'these roles' if len(unset) > 1 else 'that role'}; grant by hand (deploy/roles.sql)",
            unset=unset,
        )
    named = {s: role for s, role in ((APP_SETTING, roles.app), (PROBE_SETTING, roles.probe)) if role}
    if not named:
        return
    rows = {row["name"]: row for row in await conn.fetch(ROLES_QUERY, list(named.values()))}
    for setting, role in named.items():
        if not rows[role]["found"]:
            raise RoleMissing(
                f"{setting}={role!r} names no role on this server (names are case-sensitive); create "
                f"it first (deploy/roles.sql, docs/deploy.md) or fix the setting. Nothing was changed"
            )
        if role == rows[role]["me"]:
            raise RoleMissing(
                f"{setting}={role!r} is the role the migrator connects as: the owner would grant to itself "
                "and the application would keep DDL rights; give it a role of its own. Nothing was changed"
            )
    await refuse_unsafe_roles(conn, roles.named)
    refuse_unfixable(await extras(conn, roles.named), changed=False)


# One row: the schema, and every privilege to add, from the catalogs. has_*_privilege counts
# PUBLIC and role membership: nothing is granted twice.
MISSING_QUERY: Final = """
WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = $5),
ext AS (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
ledger AS (SELECT to_regclass($3) AS oid),
owned AS (
  SELECT c.oid, format('%I.%I', s.nspname, c.relname) AS name, c.relkind, c.relowner
  FROM s JOIN pg_catalog.pg_class c ON c.relnamespace = s.oid
  WHERE c.oid NOT IN (SELECT objid FROM ext) AND c.oid IS DISTINCT FROM (SELECT oid FROM ledger)
),
rows AS (
  SELECT 'GRANT' AS action, 'SCHEMA' AS kind, quote_ident(s.nspname) AS name, r AS grantee,
         'USAGE' AS privilege, true AS can, '' AS owner
  FROM s, unnest(array_remove(ARRAY[$1, $2]::text[], NULL)) AS r
  WHERE NOT has_schema_privilege(r, s.oid, 'USAGE')
  UNION ALL
  SELECT 'GRANT', 'TABLE', o.name, $1, p, pg_has_role(o.relowner, 'USAGE'), pg_get_userbyid(o.relowner)
  FROM owned o CROSS JOIN unnest($4::text[]) AS p
  WHERE $1 IS NOT NULL AND o.relkind IN ('r', 'p', 'v') AND NOT has_table_privilege($1, o.oid, p)
  UNION ALL
  SELECT 'GRANT', 'SEQUENCE', o.name, $1, 'USAGE', pg_has_role(o.relowner, 'USAGE'),
         pg_get_userbyid(o.relowner)
  FROM owned o
  -- CASE: has_sequence_privilege raises on anything but a sequence, whatever order WHERE runs in.
  WHERE $1 IS NOT NULL AND CASE WHEN o.relkind = 'S' THEN NOT has_sequence_privilege($1, o.oid, 'USAGE') END
  UNION ALL
  SELECT 'GRANT', 'TYPE', format('%I.%I', s.nspname, t.typname), $1, 'USAGE',
         pg_has_role(t.typowner, 'USAGE'), pg_get_userbyid(t.typowner)
  FROM s JOIN pg_catalog.pg_type t ON t.typnamespace = s.oid
  WHERE $1 IS NOT NULL AND t.typtype IN ('e', 'd', 'r', 'm') AND t.oid NOT IN (SELECT objid FROM ext)
    AND NOT has_type_privilege($1, t.oid, 'USAGE')
  UNION ALL
  SELECT 'GRANT', 'TABLE', $3, $2, 'SELECT', true, ''
  FROM ledger
  WHERE $2 IS NOT NULL AND ledger.oid IS NOT NULL AND NOT has_table_privilege($2, ledger.oid, 'SELECT')
)
SELECT quote_ident((SELECT nspname FROM s)) AS schema,
       coalesce((SELECT json_agg(rows) FROM rows), '[]')::text AS rows
"""


@dataclass(frozen=True)
class Change:
    """One privilege to grant to one role on one object."""

    action: str
    kind: str
    name: str
    grantee: str
    privilege: str
    can: bool
    owner: str


def statements(changes: list[Change]) -> list[str]:
    """One GRANT per object and role, privileges in a fixed order."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for c in changes:
        grouped.setdefault((c.kind, c.name, c.grantee), []).append(c.privilege)
    return [
        f"GRANT {', '.join(sorted(set(privileges)))} ON {kind} {name} TO {quote_ident(grantee)}"
        for (kind, name, grantee), privileges in grouped.items()
    ]


def default_privileges(schema: str, app: str) -> list[str]:
    """For whatever the migrator's role creates in the schema from now on (justified above)."""
    target = f"IN SCHEMA {schema} GRANT"
    grantee = quote_ident(app)
    return [
        f"ALTER DEFAULT PRIVILEGES {target} {', '.join(TABLE_PRIVILEGES)} ON TABLES TO {grantee}",
        f"ALTER DEFAULT PRIVILEGES {target} USAGE ON SEQUENCES TO {grantee}",
        f"ALTER DEFAULT PRIVILEGES {target} USAGE ON TYPES TO {grantee}",
    ]


async def apply(
    conn: asyncpg.Connection, roles: Roles, log: EventLog, *, lock_timeout: float, after_files: bool = False
) -> list[str]:
    """Grant what is missing and take back what a role must never hold, in one transaction whose
    statements wait at most `lock_timeout` for a table's lock (PostgreSQL 18's GRANT and REVOKE
    take ACCESS SHARE on the table); returns the GRANT and REVOKE statements it ran. Exit 10 when
    the migrator's role may not grant on an object it does not own; exit 2 (RoleRefused) when a
    role holds something `up` cannot take back, checked again after the REVOKEs, before commit."""
    if not roles.any:
        return []
    row = await conn.fetchrow(MISSING_QUERY, roles.app, roles.probe, TABLE, list(TABLE_PRIVILEGES), NAMESPACE)
    changes = [Change(**item) for item in json.loads(row["rows"])]
    foreign = [c for c in changes if not c.can]
    if foreign:
        me = str(await conn.fetchval("SELECT current_user"))
        missing = [Missing("ownership", c.kind.lower(), c.name, me) for c in foreign]
        raise denied(
            list({m.name: m for m in missing}.values()),
            where=f" (to grant {roles.app} its privileges; owned by {foreign[0].owner})",
        )
    extra = await extras(conn, roles.named)
    refuse_unfixable(extra, changed=after_files)
    granted = statements(changes)
    revoked = revocations(extra) + await default_revocations(conn, roles.named)
    defaults = default_privileges(row["schema"], roles.app) if roles.app and row["schema"] else []
    if defaults or granted or revoked:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{to_ms(lock_timeout)}ms'")
            await conn.execute("; ".join(defaults + granted + revoked))
            # A REVOKE the server could not apply (another grantor's grant) leaves the privilege:
            # refused, and the whole transaction rolled back.
            refuse_unfixable(await extras(conn, roles.named), changed=after_files)
    if granted:
        log.info("grants_applied", app_role=roles.app, probe_role=roles.probe, statements=granted)
    if revoked:
        log.info(
            "grants_revoked",
            "took back what the application's or the probe's role must never hold (docs/deploy.md, Roles)",
            app_role=roles.app,
            probe_role=roles.probe,
            statements=revoked,
        )
    return granted + revoked
