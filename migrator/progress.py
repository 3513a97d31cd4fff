"""Signs of life during a long statement: every interval, from a second connection, how long the
statement has run and, for an index build, its phase and percent done."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Final

import asyncpg

from migrator.errors import MigratorError
from migrator.events import EventLog

# How often a running statement reports; tests pass a shorter interval to the constructor.
PROGRESS_INTERVAL: Final = 10.0

# Both views show a backend of the same role to the role itself: `up` needs no extra privilege.
PROGRESS_QUERY: Final = """
SELECT ci.phase AS index_phase, ci.blocks_total, ci.blocks_done, ci.tuples_total, ci.tuples_done,
       ci.lockers_total, ci.lockers_done, cl.phase AS cluster_phase, cl.heap_blks_total,
       cl.heap_blks_scanned
FROM (SELECT $1::int AS pid) AS target
LEFT JOIN pg_stat_progress_create_index ci ON ci.pid = target.pid
LEFT JOIN pg_stat_progress_cluster cl ON cl.pid = target.pid
"""


def percent(done: int | None, total: int | None) -> float | None:
    return round(100.0 * (done or 0) / total, 1) if total else None


def index_progress(row: Mapping[str, object]) -> dict[str, object]:
    """Phase and percent of a CREATE INDEX (or CLUSTER / VACUUM FULL); empty for other statements.
    The percent follows the counter the phase advances: blocks while scanning, then tuples, then
    the sessions a CONCURRENTLY build waits for."""
    ints = {key: value for key, value in row.items() if isinstance(value, int)}
    if row.get("index_phase"):
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
        return {"phase": row["index_phase"], "percent": done, **ints}
    if row.get("cluster_phase"):
        return {
            "phase": row["cluster_phase"],
            "percent": percent(ints.get("heap_blks_scanned"), ints.get("heap_blks_total")),
        }
    return {}


class ProgressWatcher:
    """Reports `statement_progress` while a statement runs longer than `interval` seconds. The
    second connection opens at the first report, so short statements cost nothing."""

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

    @contextlib.asynccontextmanager
    async def watching(self, pid: int, file: str, line: int) -> AsyncIterator[None]:
        task = asyncio.create_task(self._report(pid, file, line, time.monotonic()))
        try:
            yield
        finally:
            task.cancel()
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
            fields = await self._read(pid)
            elapsed = round(time.monotonic() - started, 1)
            self._log.transient(
                "statement_progress",
                f"{file} line {line}: running for {elapsed:g} s",
                file=file,
                line=line,
                elapsed_s=elapsed,
                **fields,
            )

    async def _read(self, pid: int) -> dict[str, object]:
        """The index build's progress; nothing (and no more tries) when the second connection
        cannot be had: progress is a nicety, it never fails a migration."""
        try:
            if self._conn is None:
                self._conn = await self._connect()
            row = await self._conn.fetchrow(PROGRESS_QUERY, pid)
        except (MigratorError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            self._broken = True
            self._log.warning("progress_unavailable", f"cannot read progress: {type(exc).__name__}")
            return {}
        return index_progress(dict(row)) if row is not None else {}
