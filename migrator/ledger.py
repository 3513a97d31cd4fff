"""The ledger table: which migrations were applied, when, by whom, with which checksum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from migrator.catalog import Catalog

TABLE: Final = "public.kata_schema_migrations"

CREATE_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    version      bigint PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  double precision NOT NULL,
    applied_by   text NOT NULL,
    kind         text NOT NULL DEFAULT 'applied' CHECK (kind IN ('applied', 'baseline'))
)
"""


@dataclass(frozen=True)
class AppliedMigration:
    """One ledger row."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: float
    applied_by: str
    kind: str


@dataclass(frozen=True)
class SchemaState:
    """The ledger compared with a catalog: what is applied, pending, changed or missing."""

    applied: tuple[AppliedMigration, ...]
    pending: tuple[int, ...]
    changed: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def version(self) -> int:
        """The highest applied version, 0 for an empty or absent ledger."""
        return max((row.version for row in self.applied), default=0)

    @property
    def drifted(self) -> bool:
        return bool(self.changed or self.missing)


async def ledger_exists(conn: asyncpg.Connection) -> bool:
    found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
    return bool(found)


async def read_ledger(conn: asyncpg.Connection) -> tuple[AppliedMigration, ...]:
    """All rows in version order; empty when the table does not exist yet. Read-only."""
    if not await ledger_exists(conn):
        return ()
    rows = await conn.fetch(
        f"SELECT version, name, checksum, applied_at, duration_ms, applied_by, kind FROM {TABLE} "
        "ORDER BY version"
    )
    return tuple(AppliedMigration(**dict(row)) for row in rows)


def compare(catalog: Catalog, applied: tuple[AppliedMigration, ...]) -> SchemaState:
    """Pure comparison. A baseline row has no file checksum to compare, so it never drifts."""
    files = catalog.by_version()
    done = {row.version: row for row in applied}
    changed = tuple(
        v
        for v, row in done.items()
        if v in files and row.kind == "applied" and row.checksum != files[v].checksum
    )
    missing = tuple(v for v, row in done.items() if v not in files and row.kind == "applied")
    pending = tuple(v for v in files if v not in done)
    return SchemaState(applied=applied, pending=pending, changed=changed, missing=missing)


async def read_state(conn: asyncpg.Connection, catalog: Catalog) -> SchemaState:
    return compare(catalog, await read_ledger(conn))
