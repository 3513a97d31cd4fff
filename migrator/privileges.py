"""Permission denied, explained: what each verb needs checked before it starts, and a server's
"permission denied" turned into the object, the missing privilege and the GRANT that fixes it."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.errors import UsageError
from migrator.migration_errors import failure_outcome
from migrator.role_errors import InsufficientPrivilege
from schema.catalog import Migration
from schema.ledger import SCHEMA, TABLE, TABLE_NAME
from schema.quoting import quote_ident
from schema.splitter import Statement

# The verbs that write (`Verb.writes` in migrator/verbs.py: they create, record or alter the
# application's tables) run as the schema owner role; every other verb only reads the ledger.
OWNER_ADVICE: Final = (
    "kata-migrate's verbs that write (`up`, `baseline`, `repair`: `kata-migrate --help`) are meant to run as "
    "the schema owner role: check that the migration Job's Secret holds the owner's URL, not the "
    "application's or the probe's (docs/deploy.md); if this role is that owner,"
)
READ_ADVICE: Final = (
    "`up` grants this to the role the migration Job names in MIGRATOR_PROBE_ROLE (docs/deploy.md); otherwise"
)
WHO: Final = "as the owner of each object named or a superuser"

ACCESS_QUERY: Final = """
SELECT current_user AS role,
       has_schema_privilege(n.oid, 'USAGE') AS usage,
       has_schema_privilege(n.oid, 'CREATE') AS create,
       coalesce(has_table_privilege(c.oid, 'SELECT'), true) AS select,
       coalesce(has_table_privilege(c.oid, 'INSERT'), true) AS insert
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = $2
WHERE n.nspname = $1
"""


@dataclass(frozen=True)
class Missing:
    """One privilege the role lacks on one object, and the statement that grants it."""

    privilege: str
    kind: str
    name: str
    role: str

    def describe(self) -> str:
        return f"{self.privilege} on {self.kind} {self.name}"

    @property
    def statement(self) -> str | None:
        """The GRANT (or ALTER ... OWNER) that gives it; None for an extension, which has no
        OWNER TO: its owner has to run the statement."""
        grantee = quote_ident(self.role)
        if self.kind == "extension":
            return None
        if self.privilege == "ownership":
            return f"ALTER {self.kind.upper()} {self.name} OWNER TO {grantee};"
        return f"GRANT {self.privilege} ON {self.kind.upper()} {self.name} TO {grantee};"


async def check_access(conn: asyncpg.Connection, verb: str, *, writes: bool) -> None:
    """Before the verb runs: the ledger's schema and table privileges it needs (CREATE and INSERT
    when it `writes`), or exit 10 naming each missing one. One catalog query; catalogs are readable
    by every role."""
    schema = SCHEMA
    row = await conn.fetchrow(ACCESS_QUERY, schema, TABLE_NAME)
    if row is None:
        raise UsageError(
            f"schema {schema!r} does not exist in this database: the migrator keeps its ledger and "
            f"the application's tables there. Create it as an administrator (`CREATE SCHEMA {schema} "
            "AUTHORIZATION <owner role>`) or point DATABASE_URL at the right database; nothing was changed"
        )
    role = str(row["role"])
    # `repair` records nothing, but it is a verb that writes: asked of another role, the missing
    # privileges of an owner name the fix (the Job's Secret) before its read-only setting does.
    needed = [
        ("USAGE", "schema", schema, row["usage"]),
        ("CREATE", "schema", schema, row["create"] or not writes),
        ("SELECT", "table", TABLE, row["select"]),
        ("INSERT", "table", TABLE, row["insert"] or not writes),
    ]
    missing = [Missing(privilege, kind, name, role) for privilege, kind, name, held in needed if not held]
    if missing:
        advice = OWNER_ADVICE if writes else READ_ADVICE
        raise denied(missing, where=f" (needed by `kata-migrate {verb}`; nothing was changed)", advice=advice)


OWNERSHIP_QUERY: Final = """
SELECT current_user AS role, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY ($2::text[]) AND NOT pg_has_role(c.relowner, 'USAGE')
ORDER BY c.relname
"""


async def check_ownership(conn: asyncpg.Connection, verb: str, schema: str, tables: list[str]) -> None:
    """Exit 10 naming each table of `schema` the role does not own (ALTER TABLE and CREATE INDEX
    need ownership), before the verb changes anything."""
    rows = await conn.fetch(OWNERSHIP_QUERY, schema, tables)
    if rows:
        missing = [Missing("ownership", "table", quote_ident(r["relname"]), str(r["role"])) for r in rows]
        where = f" (needed by `kata-migrate {verb}`; nothing was changed)"
        raise denied(missing, where=where, advice=OWNER_ADVICE)


def denied(missing: list[Missing], *, where: str, advice: str = "") -> InsufficientPrivilege:
    statements = [f"`{m.statement}`" for m in missing if m.statement]
    fix = f"{WHO}: {' '.join(statements)}" if statements else ""
    extensions = [m.name for m in missing if m.kind == "extension"]
    if extensions:
        fix += (
            " and " if fix else ""
        ) + f"the statement as the owner of extension {extensions[0]} or a superuser"
    return InsufficientPrivilege(
        missing[0].role, [m.describe() for m in missing], fix, where=where, advice=advice
    )


def connect_denied(role: str, database: str) -> InsufficientPrivilege:
    """42501 when connecting: the role lacks CONNECT on the database (`REVOKE CONNECT ... FROM
    PUBLIC` without a GRANT to it). Not retried: no wait grants it."""
    missing = Missing("CONNECT", "database", quote_ident(database), role)
    return denied([missing], where=" (the server refused the connection; nothing was done)")


# --- a server's "permission denied" --------------------------------------------------------

KINDS: Final = (
    "materialized view|foreign table|table|view|sequence|schema|type|domain|function|procedure"
    "|routine|database|language|extension|index|column"
)
DENIED: Final = re.compile(rf"^permission denied for ({KINDS}) (.+)$")
NOT_OWNER: Final = re.compile(rf"^must be owner of ({KINDS}) (.+)$")
# For a table, PostgreSQL does not say which privilege was missing; the statement does.
TABLE_PRIVILEGE_BY_VERB: Final = {
    "select": "SELECT",
    "with": "SELECT",
    "insert": "INSERT",
    "update": "UPDATE",
    "delete": "DELETE",
    "truncate": "TRUNCATE",
    "copy": "SELECT",
    "create": "REFERENCES",  # CREATE TABLE ... REFERENCES t; CREATE VIEW reads: see below
    "alter": "REFERENCES",
}
PRIVILEGE_BY_KIND: Final = {
    "sequence": "USAGE",
    "type": "USAGE",
    "domain": "USAGE",
    "language": "USAGE",
    "function": "EXECUTE",
    "procedure": "EXECUTE",
    "routine": "EXECUTE",
}


def privilege_for(kind: str, statement: str) -> str:
    """The privilege a denial on `kind` most likely means, given the statement that met it."""
    words = statement.lower().split()
    verb = words[0] if words else ""
    if kind in PRIVILEGE_BY_KIND:
        return PRIVILEGE_BY_KIND[kind]
    if kind in ("schema", "database"):
        return "CREATE" if verb in ("create", "alter") else ("USAGE" if kind == "schema" else "CONNECT")
    if verb == "create" and len(words) > 1 and words[1] in ("view", "materialized", "or"):
        return "SELECT"
    return TABLE_PRIVILEGE_BY_VERB.get(verb, "SELECT")


def from_server(exc: asyncpg.PostgresError, role: str, statement: str) -> Missing | None:
    """The object and privilege in a 42501 message; None when PostgreSQL's text is another shape
    (it is English unless lc_messages says otherwise)."""
    message = str(getattr(exc, "message", None) or exc)
    owner = NOT_OWNER.match(message)
    if owner:
        return Missing("ownership", owner.group(1), as_sql(owner.group(1), owner.group(2)), role)
    match = DENIED.match(message)
    if match:
        kind, name = match.groups()
        return Missing(privilege_for(kind, statement), kind, as_sql(kind, name), role)
    return None


def as_sql(kind: str, name: str) -> str:
    """The message prints names bare; a GRANT needs `Mood` quoted (a function keeps its text)."""
    return name if kind in ("function", "procedure", "routine") else quote_ident(name)


async def current_role(conn: asyncpg.Connection) -> str:
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return str(await conn.fetchval("SELECT current_user"))
    return "(the migrator's role)"


def explain(
    exc: asyncpg.PostgresError, role: str, statement: str = "", where: str = ""
) -> InsufficientPrivilege:
    """Exit 10 for any 42501, with the GRANT when the message names the object."""
    missing = from_server(exc, role, statement)
    if missing is not None:
        return denied([missing], where=where, advice=OWNER_ADVICE)
    message = str(getattr(exc, "message", None) or exc)
    return InsufficientPrivilege(
        role,
        [f"a privilege PostgreSQL reports as: {message}"],
        f"{WHO}: the GRANT (or ALTER ... OWNER) for the object named there",
        where=where,
        advice=OWNER_ADVICE,
    )


async def in_migration(
    conn: asyncpg.Connection, migration: Migration, statement: Statement, exc: asyncpg.PostgresError
) -> InsufficientPrivilege:
    """A migration's statement met "permission denied": its file and position, then the fix."""
    line, column = migration.lines.line_column(statement.offset)
    outcome = failure_outcome(transactional=migration.transactional)
    where = f" (migration {migration.filename}, line {line}, column {column}: {outcome})"
    return explain(exc, await current_role(conn), statement.text, where)
