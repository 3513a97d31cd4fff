"""The privileges a role named for the application or the probe holds beyond its column of the
roles table, on the schema, its tables, views and sequences and the ledger, and the default
privileges that would hand it more on what migrations create. `up` takes back, by REVOKE, what
the owner granted; anything else (ownership, PUBLIC, a membership, another grantor) is refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.role_errors import RoleRefused
from migrator.role_policy import forbidden
from migrator.settings import Named
from schema.ledger import TABLE
from schema.live import NAMESPACE
from schema.quoting import quote_ident

# Every privilege a named role holds on the schema, its tables, views and sequences (not an
# extension's) and the ledger that its column does not allow, with where it comes from: the
# object's ACL or its columns' (has_*_privilege also counts PUBLIC and role memberships).
EXTRAS_QUERY: Final = """
WITH s AS (SELECT oid, nspname, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE nspname = $1),
ext AS (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
ledger AS (SELECT to_regclass($2) AS oid),
objects AS (
  SELECT 'schema' AS kind, 'SCHEMA' AS sql_kind, s.oid, quote_ident(s.nspname) AS name, s.nspowner AS owner,
         coalesce(s.nspacl, acldefault('n'::"char", s.nspowner)) AS acl
  FROM s
  UNION ALL
  SELECT CASE WHEN c.oid = (SELECT oid FROM ledger) THEN 'ledger' WHEN c.relkind = 'S' THEN 'sequence'
              ELSE 'table' END,
         CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
         c.oid, format('%I.%I', s.nspname, c.relname), c.relowner,
         coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
  FROM s JOIN pg_catalog.pg_class c ON c.relnamespace = s.oid
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.oid NOT IN (SELECT objid FROM ext)
),
forbidden AS (
  SELECT f.role, g.oid AS role_oid, f.kind, f.privilege
  FROM json_to_recordset($3::json) AS f(role text, kind text, privilege text)
  JOIN pg_catalog.pg_roles g ON g.rolname = f.role
),
held AS (
  SELECT f.role, f.role_oid, f.privilege, o.*
  FROM objects o JOIN forbidden f ON f.kind = o.kind
  -- CASE: each has_*_privilege raises on another kind of object, whatever order WHERE runs in.
  WHERE CASE
    WHEN o.kind = 'schema' THEN has_schema_privilege(f.role_oid, o.oid, f.privilege)
    WHEN o.kind = 'sequence' THEN has_sequence_privilege(f.role_oid, o.oid, f.privilege)
    WHEN f.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
      THEN has_any_column_privilege(f.role_oid, o.oid, f.privilege)
    ELSE has_table_privilege(f.role_oid, o.oid, f.privilege)
  END
),
entries AS (
  SELECT h.role_oid, h.oid, h.privilege, a.grantor, a.grantee
  FROM held h, LATERAL (
    SELECT * FROM aclexplode(h.acl)
    UNION ALL
    SELECT x.* FROM pg_catalog.pg_attribute att, aclexplode(att.attacl) AS x
    WHERE att.attrelid = h.oid AND h.kind <> 'schema' AND att.attnum > 0 AND att.attacl IS NOT NULL
  ) AS a
  WHERE a.privilege_type = h.privilege
)
SELECT h.role, h.sql_kind, h.name, h.privilege, h.owner = h.role_oid AS owns,
       pg_get_userbyid(h.owner)::text AS owner,
       EXISTS (SELECT FROM entries e WHERE (e.role_oid, e.oid, e.privilege) = (h.role_oid, h.oid, h.privilege)
               AND e.grantee = h.role_oid AND pg_has_role(e.grantor, 'USAGE')) AS revocable,
       EXISTS (SELECT FROM entries e WHERE (e.role_oid, e.oid, e.privilege) = (h.role_oid, h.oid, h.privilege)
               AND e.grantee = 0) AS public,
       ARRAY(SELECT DISTINCT pg_get_userbyid(e.grantee)::text FROM entries e
             WHERE (e.role_oid, e.oid, e.privilege) = (h.role_oid, h.oid, h.privilege)
               AND e.grantee NOT IN (0, h.role_oid) AND pg_has_role(h.role_oid, e.grantee, 'USAGE')
             ORDER BY 1) AS via,
       ARRAY(SELECT DISTINCT pg_get_userbyid(e.grantor)::text FROM entries e
             WHERE (e.role_oid, e.oid, e.privilege) = (h.role_oid, h.oid, h.privilege)
               AND e.grantee = h.role_oid AND NOT pg_has_role(e.grantor, 'USAGE')
             ORDER BY 1) AS grantors,
       current_user::text AS me
FROM held h
ORDER BY h.role, h.name, h.privilege
"""

# Default privileges the migrator's role set (for the schema or everywhere) that would hand a
# named role, on each table or sequence a migration creates, what its column does not allow.
DEFAULTS_QUERY: Final = """
SELECT g.rolname::text AS role, CASE d.defaclobjtype WHEN 'r' THEN 'table' ELSE 'sequence' END AS kind,
       a.privilege_type AS privilege, d.defaclnamespace <> 0 AS in_schema
FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) AS a, pg_catalog.pg_roles g
WHERE g.oid = a.grantee AND d.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  AND d.defaclobjtype IN ('r', 'S')
  AND (d.defaclnamespace = 0
       OR d.defaclnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1))
  AND (g.rolname, CASE d.defaclobjtype WHEN 'r' THEN 'table' ELSE 'sequence' END, a.privilege_type)
      IN (SELECT * FROM json_to_recordset($2::json) AS f(role text, kind text, privilege text))
ORDER BY 1, 2, 3
"""


@dataclass(frozen=True)
class Extra:
    """A privilege a named role holds on one object that its column does not allow."""

    named: Named
    sql_kind: str
    name: str
    privilege: str
    owns: bool
    owner: str
    revocable: bool
    public: bool
    via: tuple[str, ...]
    grantors: tuple[str, ...]
    me: str

    @property
    def fixable(self) -> bool:
        """`REVOKE ... FROM role` as the migrator's role takes it away, and nothing else gives it."""
        return self.revocable and not (self.owns or self.public or self.via or self.grantors)

    @property
    def revoke(self) -> str:
        return f"REVOKE {self.privilege} ON {self.sql_kind} {self.name} FROM {quote_ident(self.named.role)}"

    def problem(self) -> str:
        on = f"{self.sql_kind.lower()} {self.name}"
        held = f"{self.named.shown} holds {self.privilege} on {on}, which it must never hold"
        target = f"{self.privilege} ON {self.sql_kind} {self.name}"
        if self.owns:
            owner = quote_ident(self.me)
            return f"{held}: it owns it; run `ALTER {self.sql_kind} {self.name} OWNER TO {owner};`"
        if self.public:
            return (
                f"{held}, through PUBLIC: as {self.owner} or a superuser run `REVOKE {target} FROM PUBLIC;`"
            )
        if self.via:
            role = quote_ident(self.via[0])
            return (
                f"{held}, through its membership in {', '.join(self.via)}: as an administrator run "
                f"`REVOKE {role} FROM {quote_ident(self.named.role)};` or, as {self.owner}, "
                f"`REVOKE {target} FROM {role};`"
            )
        grantor = self.grantors[0] if self.grantors else self.owner
        return (
            f"{held}, granted by {grantor}, which the migrator's role {self.me} cannot revoke: as {grantor} "
            f"or a superuser run `{self.revoke};`"
        )


async def extras(conn: asyncpg.Connection, named: Sequence[Named]) -> list[Extra]:
    """Every privilege a named role holds beyond its column, on the objects as they are now."""
    if not named:
        return []
    by_role = {n.role: n for n in named}
    never = forbidden(named, conn.get_server_version().major)
    rows = await conn.fetch(EXTRAS_QUERY, NAMESPACE, TABLE, never)
    return [
        Extra(
            named=by_role[row["role"]],
            sql_kind=row["sql_kind"],
            name=row["name"],
            privilege=row["privilege"],
            owns=row["owns"],
            owner=row["owner"],
            revocable=row["revocable"],
            public=row["public"],
            via=tuple(row["via"]),
            grantors=tuple(row["grantors"]),
            me=row["me"],
        )
        for row in rows
    ]


async def default_revocations(conn: asyncpg.Connection, named: Sequence[Named]) -> list[str]:
    """`ALTER DEFAULT PRIVILEGES ... REVOKE` for each default that would hand a role more than
    its column on the tables and sequences migrations create."""
    if not named:
        return []
    never = forbidden(named, conn.get_server_version().major)
    rows = await conn.fetch(DEFAULTS_QUERY, NAMESPACE, never)
    grouped: dict[tuple[str, str, bool], list[str]] = {}
    for row in rows:
        grouped.setdefault((row["role"], row["kind"], row["in_schema"]), []).append(row["privilege"])
    return [
        f"ALTER DEFAULT PRIVILEGES{f' IN SCHEMA {quote_ident(NAMESPACE)}' if in_schema else ''} "
        f"REVOKE {', '.join(sorted(privileges))} ON {kind.upper()}S FROM {quote_ident(role)}"
        for (role, kind, in_schema), privileges in grouped.items()
    ]


def revocations(found: Sequence[Extra]) -> list[str]:
    """One REVOKE per object and role, privileges in a fixed order (a table-level REVOKE takes
    the matching column privileges too)."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for e in found:
        grouped.setdefault((e.sql_kind, e.name, e.named.role), []).append(e.privilege)
    return [
        f"REVOKE {', '.join(sorted(set(privileges)))} ON {kind} {name} FROM {quote_ident(role)}"
        for (kind, name, role), privileges in grouped.items()
    ]


def refuse_unfixable(found: Sequence[Extra], *, changed: bool) -> None:
    """RoleRefused (exit 2) for each extra privilege `up` cannot take away itself."""
    unfixable = [e for e in found if not e.fixable]
    if unfixable:
        raise RoleRefused([e.problem() for e in unfixable], changed=changed)
