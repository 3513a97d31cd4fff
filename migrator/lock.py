"""The session advisory lock that makes one migrator apply while the others wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from migrator.migration_errors import LockTimeout

# pg_advisory_lock(int4, int4): shows in pg_locks as classid/objid with objsubid = 2.
# 0x4B415441 is "KATA"; 1 is the schema migrations lock (per database, as advisory locks are).
LOCK_CLASS: Final = 0x4B415441
LOCK_OBJECT: Final = 1
POLL_INTERVAL: Final = 0.2

HOLDER_QUERY: Final = """
SELECT a.pid, a.application_name, a.backend_start, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid = $1::int::oid AND l.objid = $2::int::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
"""


# This session holds the migration lock (the session guard asks after every statement).
HELD_HERE: Final = (
    "EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
    f"AND classid = {LOCK_CLASS}::oid AND objid = {LOCK_OBJECT}::oid AND objsubid = 2)"
)


@dataclass(frozen=True)
class LockHolder:
    """Who holds the migration lock, as pg_stat_activity shows them."""

    pid: int
    application_name: str
    since: datetime | None

    def describe(self) -> str:
        since = self.since.isoformat(timespec="seconds") if self.since else "unknown"
        return f"{self.application_name or '(no application_name)'} (pid {self.pid}, connected since {since})"


async def try_acquire(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1::int, $2::int)", LOCK_CLASS, LOCK_OBJECT))


async def find_holder(conn: asyncpg.Connection) -> LockHolder | None:
    row = await conn.fetchrow(HOLDER_QUERY, LOCK_CLASS, LOCK_OBJECT)
    if row is None:
        return None
    return LockHolder(
        pid=row["pid"], application_name=row["application_name"] or "", since=row["backend_start"]
    )


async def acquire(
    conn: asyncpg.Connection, timeout: float, on_wait: Callable[[LockHolder | None], None] | None = None
) -> bool:
    """Take the lock, polling up to `timeout` seconds; LockTimeout naming the holder after that.

    Waiters poll with `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a
    blocked statement keeps a snapshot open, and `CREATE INDEX CONCURRENTLY` in the holder
    waits for every older snapshot in the database, so a blocking waiter deadlocks with it.
    Returns whether we had to wait; `on_wait` hears who held it first.
    """
    if await try_acquire(conn):
        return False
    if on_wait is not None:
        on_wait(await find_holder(conn))
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        if await try_acquire(conn):
            return True
    holder = await find_holder(conn)
    raise LockTimeout(
        time.monotonic() - started, holder.describe() if holder else "a session that has since left"
    )


async def release(conn: asyncpg.Connection) -> bool:
    """Unlock; False when this session no longer held the lock (asked first, so the server does not
    warn "you don't own a lock")."""
    query = f"SELECT CASE WHEN {HELD_HERE} THEN pg_advisory_unlock($1::int, $2::int) ELSE false END"
    return bool(await conn.fetchval(query, LOCK_CLASS, LOCK_OBJECT))
