"""The ledger table: its DDL, reading its rows, and the one rendering of a row to write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from schema.catalog import Migration

# The schema the migrations create their objects in; the ledger lives there beside them. Every
# reader takes the schema and the bare name from here, never by splitting TABLE.
SCHEMA: Final = "public"
TABLE_NAME: Final = "kata_schema_migrations"
TABLE: Final = f"{SCHEMA}.{TABLE_NAME}"

CREATE_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    version      bigint PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  double precision NOT NULL,
    applied_by   text NOT NULL,
    kind         text NOT NULL DEFAULT 'applied' CHECK (kind IN ('applied', 'baseline')),
    file         text
)
"""
# Ledgers made before the file name was recorded: their rows keep file NULL.
ADD_FILE_COLUMN: Final = f"ALTER TABLE {TABLE} ADD COLUMN file text"
APPLIED: Final = "applied"
BASELINE: Final = "baseline"

# What each column read or written must be: the type CREATE_TABLE gives it first, then the ones
# that read and write the same. `file` may be absent (a ledger from before it was recorded).
COLUMN_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "version": ("bigint", "integer"),
    "name": ("text", "character varying"),
    "checksum": ("text", "character varying"),
    "applied_at": ("timestamp with time zone",),
    "duration_ms": ("double precision", "numeric", "real"),
    "applied_by": ("text", "character varying"),
    "kind": ("text", "character varying"),
    "file": ("text", "character varying"),
}
OPTIONAL_COLUMNS: Final = frozenset({"file"})
# The ledger's columns and their types (without typmod); no row when the table does not exist.
COLUMNS_QUERY: Final = """
SELECT a.attname::text AS name, format_type(a.atttypid, NULL) AS type
FROM (SELECT to_regclass($1) AS oid) AS ledger
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = ledger.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE ledger.oid IS NOT NULL
"""


class LedgerShapeError(Exception):
    """A table by the ledger's name whose columns are not the ledger's: made by another tool, or
    altered. Reading it would misreport every version (a text `version` never equals a file's)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{TABLE}: {'; '.join(self.problems)}")


def shape_problems(columns: Mapping[str, str]) -> list[str]:
    """What is wrong with a ledger of these {column: type}: each missing or mistyped column."""
    problems = []
    for name, types in COLUMN_TYPES.items():
        found = columns.get(name)
        if found is None and name not in OPTIONAL_COLUMNS:
            problems.append(f"column {name} is missing")
        elif found is not None and found not in types:
            problems.append(f"column {name} is {found}, not {types[0]}")
    return problems


@dataclass(frozen=True)
class AppliedMigration:
    """One ledger row. `name` is the file's slug (`add_index` for `0003_add_index.sql`), `file`
    the file name itself (None in rows written before it was recorded)."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: float
    applied_by: str
    kind: str
    file: str | None = None

    def describe(self) -> str:
        """The file name when recorded; else version and slug, since `0003_x.sql` and `3_x.sql`
        are both version 3 and a rebuilt name could name a file that never existed."""
        return self.file or f"version {self.version} ({self.name})"


async def create_ledger(conn: asyncpg.Connection) -> None:
    """The table, or the column an older ledger lacks. The ALTER runs only when the column is
    missing: ALTER TABLE takes an exclusive lock even when IF NOT EXISTS makes it a no-op."""
    await conn.execute(CREATE_TABLE)
    has_file = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attname = 'file' AND NOT attisdropped)",
        TABLE,
    )
    if not has_file:
        await conn.execute(ADD_FILE_COLUMN)


async def read_ledger(conn: asyncpg.Connection) -> tuple[AppliedMigration, ...]:
    """All rows in version order; empty when the table does not exist yet; LedgerShapeError when
    its columns are not the ledger's. Read-only, and `SELECT *` so a ledger without the newer
    `file` column still reads."""
    columns = await conn.fetch(COLUMNS_QUERY, TABLE)
    if not columns:
        return ()
    problems = shape_problems({row["name"]: row["type"] for row in columns if row["name"] is not None})
    if problems:
        raise LedgerShapeError(problems)
    rows = await conn.fetch(f"SELECT * FROM {TABLE} ORDER BY version")
    return tuple(
        AppliedMigration(
            version=row["version"],
            name=row["name"],
            checksum=row["checksum"],
            applied_at=row["applied_at"],
            duration_ms=row["duration_ms"],
            applied_by=row["applied_by"],
            kind=row["kind"],
            file=row.get("file"),
        )
        for row in rows
    )


def quote_literal(value: object) -> str:
    """A SQL literal for the ledger row. An E'' string reads the same whatever
    standard_conforming_strings is, and a migration may have changed that setting."""
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\x00", "").replace("\\", "\\\\").replace("'", "''")
    return f"E'{text}'"


# A file's duration measured by the server from its BEGIN, for a ledger row that rides in the same
# query as the file's last statement (the client cannot time what has not run yet).
TRANSACTION_DURATION_MS: Final = (
    "round((extract(epoch FROM clock_timestamp() - transaction_timestamp()) * 1000)::numeric, 1)"
)


def insert_row_sql(
    migration: Migration, duration_ms: float | None, applied_by: str, kind: str = APPLIED
) -> str:
    """The ledger row as one simple-protocol statement: no Parse/Bind round trip of its own, so it
    can ride with COMMIT in the same query. `duration_ms` None: the transaction's own duration."""
    row = (migration.version, migration.name, migration.checksum)
    duration = TRANSACTION_DURATION_MS if duration_ms is None else quote_literal(duration_ms)
    rest = (applied_by, kind, migration.filename)
    values = ", ".join([*(quote_literal(v) for v in row), duration, *(quote_literal(v) for v in rest)])
    columns = "version, name, checksum, duration_ms, applied_by, kind, file"
    return f"INSERT INTO {TABLE} ({columns}) VALUES ({values})"


async def has_tables(conn: asyncpg.Connection) -> bool:
    """Whether any table but the ledger exists outside the system schemas: a schema to baseline."""
    found = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND c.oid IS DISTINCT FROM to_regclass($1)
              AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
        )
        """,
        TABLE,
    )
    return bool(found)
