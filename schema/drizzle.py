"""Drizzle's own ledger: a database the application's `drizzle-kit migrate` made records its
migrations in `drizzle.__drizzle_migrations`, not in ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

DRIZZLE_LEDGER: Final = "drizzle.__drizzle_migrations"

# to_regclass reads the catalog only; has_table_privilege lets a role that may not read the
# table still detect it (the count is then unknown) instead of failing.
PRESENCE_QUERY: Final = f"""
SELECT to_regclass('{DRIZZLE_LEDGER}') IS NOT NULL AS present,
       coalesce(has_table_privilege(to_regclass('{DRIZZLE_LEDGER}'), 'SELECT'), false) AS readable
"""


@dataclass(frozen=True)
class DrizzleLedger:
    """Drizzle's ledger was found; `migrations` is its row count, None when this role may not read it."""

    migrations: int | None

    def describe(self) -> str:
        count = "an unknown number of" if self.migrations is None else str(self.migrations)
        return f"drizzle's ledger {DRIZZLE_LEDGER} records {count} migration(s)"


async def find_drizzle_ledger(conn: asyncpg.Connection) -> DrizzleLedger | None:
    """Drizzle's ledger when this database has one, else None."""
    row = await conn.fetchrow(PRESENCE_QUERY)
    if not row["present"]:
        return None
    if not row["readable"]:
        return DrizzleLedger(None)
    count: int = await conn.fetchval(f"SELECT count(*) FROM {DRIZZLE_LEDGER}")
    return DrizzleLedger(count)
