"""Signs of life during a long statement: every interval, from a second connection, how long the
statement has run and, for an index build, its phase and percent done, and for a CONCURRENTLY
build waiting for older transactions, the one it waits for. The same connection samples, every
second, who the statement waits for when it waits for a lock (migrator/blockers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import asyncpg

from migrator import blockers
from migrator.errors import MigratorError
from migrator.events import EventLog

T = TypeVar("T")
UNAVAILABLE: Final = (MigratorError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

# How often a running statement reports; tests pass a shorter interval to the constructor.
PROGRESS_INTERVAL: Final = 10.0
# Who a statement waits for is sampled this long after it starts, then every second: a statement
# that gives up waiting (lock_timeout) waits for no one, so it is seen while it waits or never.
FIRST_SAMPLE: Final = 0.5
SAMPLE_INTERVAL: Final = 1.0

# Both views show a backend of the same role to the role itself: `up` needs no extra privilege.
# The session a CONCURRENTLY build waits for (current_locker_pid) is named, never its query.
PROGRESS_QUERY: Final = """
SELECT ci.phase AS index_phase, ci.blocks_total, ci.blocks_done, ci.tuples_total, ci.tuples_done,
       ci.lockers_total, ci.lockers_done, ci.current_locker_pid, cl.phase AS cluster_phase,
       cl.heap_blks_total, cl.heap_blks_scanned, la.application_name AS locker_application_name,
       la.state AS locker_state, la.wait_event AS locker_wait_event,
       extract(epoch FROM clock_timestamp() - la.xact_start)::float8 AS locker_transaction_age_s
FROM (SELECT $1::int AS pid) AS target
LEFT JOIN pg_stat_progress_create_index ci ON ci.pid = target.pid
LEFT JOIN pg_stat_progress_cluster cl ON cl.pid = target.pid
LEFT JOIN pg_stat_activity la ON la.pid = ci.current_locker_pid AND ci.current_locker_pid <> 0
"""


def percent(done: int | None, total: int | None) -> float | None:
    return round(100.0 * (done or 0) / total, 1) if total else None


def index_progress(row: Mapping[str, object]) -> dict[str, object]:
    """Phase and percent of a CREATE INDEX (or CLUSTER / VACUUM FULL); empty for other statements.
    The percent follows the counter the phase advances: blocks while scanning, then tuples, then
    the sessions a CONCURRENTLY build waits for."""
    ints = {key: value for key, value in row.items() if isinstance(value, int)}
    if row.get("index_phase"):
        waiting = locker(row)
        # current_locker_pid is among the counters; the rest of who it is, beside them.
        named = {f"locker_{k}": v for k, v in waiting.fields().items() if k != "pid"} if waiting else {}
        blocks = percent(ints.get("blocks_done"), ints.get("blocks_total"))
        tuples = percent(ints.get("tuples_done"), ints.get("tuples_total"))
        lockers = percent(ints.get("lockers_done"), ints.get("lockers_total"))
        scanning = blocks is not None and blocks < 100.0
        done = (
            blocks
            if scanning
            else tuples
            if tuples is not None
            else lockers
            if lockers is not None
            else blocks
        )
        return {"phase": row["index_phase"], "percent": done, **ints, **named}
    if row.get("cluster_phase"):
        return {
            "phase": row["cluster_phase"],
            "percent": percent(ints.get("heap_blks_scanned"), ints.get("heap_blks_total")),
        }
    return {}


def locker(row: Mapping[str, Any]) -> blockers.Blocker | None:
    """The session a CONCURRENTLY build is waiting for (current_locker_pid), if any."""
    if not row.get("index_phase") or not row.get("current_locker_pid"):
        return None
    return blockers.Blocker.from_row(
        {
            "pid": row["current_locker_pid"],
            "application_name": row["locker_application_name"],
            "state": row["locker_state"],
            "transaction_age_s": row["locker_transaction_age_s"],
            "wait_event": row["locker_wait_event"],
        }
    )


def progress_message(
    file: str, line: int, elapsed: float, fields: Mapping[str, object], waiting: blockers.Blocker | None
) -> str:
    """`0002_x.sql line 24: running for 20 s, waiting for writers before build: 0 of 1 done,
    now report-job (pid 4242, idle in transaction, transaction open 75 s)`."""
    text = f"{file} line {line}: running for {elapsed:g} s"
    if "phase" in fields:
        text += f", {fields['phase']}"
    if waiting is not None:
        done, total = fields.get("lockers_done"), fields.get("lockers_total")
        text += f": {done} of {total} done, now {waiting.describe()}"
    return text


class SeenBlockers:
    """Who a statement was last seen waiting for: filled in by the watcher while it runs."""

    def __init__(self) -> None:
        self.last: tuple[blockers.Blocker, ...] = ()


class ProgressWatcher:
    """Reports `statement_progress` while a statement runs longer than `interval` seconds, and
    samples who it waits for. The second connection opens at the first sample, half a second into
    a statement, so short statements cost nothing."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        log: EventLog,
        *,
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self._connect = connect
        self._log = log
        self._interval = interval
        self._conn: asyncpg.Connection | None = None
        self._broken = False
        self._in_use = asyncio.Lock()  # the reporter and the sampler share the connection

    @contextlib.asynccontextmanager
    async def watching(self, pid: int, file: str, line: int) -> AsyncIterator[SeenBlockers]:
        seen = SeenBlockers()
        tasks = (
            asyncio.create_task(self._report(pid, file, line, time.monotonic())),
            asyncio.create_task(self._sample(pid, seen)),
        )
        try:
            yield seen
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._conn.close()
            self._conn = None

    async def _report(self, pid: int, file: str, line: int, started: float) -> None:
        while not self._broken:
            await asyncio.sleep(self._interval)  # the reporting cadence, not a synchronisation
            row = await self._query(lambda conn: conn.fetchrow(PROGRESS_QUERY, pid))
            fields = index_progress(dict(row)) if row is not None else {}
            waiting = locker(dict(row)) if row is not None else None
            elapsed = round(time.monotonic() - started, 1)
            self._log.transient(
                "statement_progress",
                progress_message(file, line, elapsed, fields, waiting),
                file=file,
                line=line,
                elapsed_s=elapsed,
                **fields,
            )

    async def _sample(self, pid: int, seen: SeenBlockers) -> None:
        await asyncio.sleep(min(FIRST_SAMPLE, self._interval))  # the sampling cadence
        while not self._broken:
            found = await self._query(lambda conn: blockers.waiting_for(conn, pid))
            if found:
                seen.last = found
            await asyncio.sleep(min(SAMPLE_INTERVAL, self._interval))

    async def _query(self, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T | None:
        """`read` on the second connection; None (and no more tries) when that connection cannot
        be had: progress and blockers are niceties, they never fail a migration."""
        async with self._in_use:
            if self._broken:
                return None
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                return await read(self._conn)
            except UNAVAILABLE as exc:
                self._broken = True
                self._log.warning(
                    "progress_unavailable", f"cannot read progress or lock waits: {type(exc).__name__}"
                )
                return None
