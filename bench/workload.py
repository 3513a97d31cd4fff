"""The application's traffic while a migration runs: 8 writers, 2 readers and a watcher, each on
its own connection, recording when every operation started and ended.

A write is kata-context's append: one transaction that bumps a context's counters and inserts the
next message. Reads list a context's latest messages and the live contexts. The watcher samples,
every 50 ms, the phase of a running index build and how many of our sessions wait on a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

WRITE_BUMP = """
UPDATE contexts SET message_count = message_count + 1, total_tokens = total_tokens + 10,
       latest_version = latest_version + 1, updated_at = now()
WHERE id = $1 RETURNING latest_version
"""
WRITE_INSERT = """
INSERT INTO messages (context_id, version, role, content, token_count) VALUES ($1, $2, 'user', $3, 10)
"""
READS = (
    "SELECT id, role, content FROM messages WHERE context_id = $1 ORDER BY version DESC LIMIT 20",
    "SELECT id, name FROM contexts WHERE deleted_at IS NULL AND id >= $1 ORDER BY id LIMIT 20",
)
WATCH = """
SELECT (SELECT phase FROM pg_stat_progress_create_index WHERE datid = (
            SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1),
       (SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'bench-%' AND wait_event_type = 'Lock'),
       (SELECT string_agg(DISTINCT coalesce(wait_event_type || ':' || wait_event, 'CPU'), ',')
        FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'bench-%' AND state = 'active')
"""


@dataclass(frozen=True)
class Op:
    """One finished operation: kind ('write' or 'read'), monotonic start and end, error or ''."""

    kind: str
    start: float
    end: float
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass(frozen=True)
class Watch:
    """One watcher sample: when, the index build phase (or ''), sessions of ours waiting on a lock,
    and what our active sessions were doing ('CPU' when on no wait event, else type:event)."""

    at: float
    phase: str
    lock_waiters: int
    activity: str


@dataclass
class Recording:
    ops: list[Op] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)


@dataclass(frozen=True)
class Load:
    """Writers and readers, and the total rate they aim at (each paced, catching up when late)."""

    writers: int = 8
    readers: int = 2
    writes_per_s: float = 300.0
    reads_per_s: float = 40.0


async def _paced(interval: float, stop: asyncio.Event, step: Callable[[], Awaitable[None]]) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        await step()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            next_at = time.monotonic()


async def _timed(kind: str, operation: Callable[[], Awaitable[None]], rec: Recording) -> None:
    """Run one operation of the load and record how long it took, and its error if it failed."""
    started = time.monotonic()
    try:
        await operation()
        rec.ops.append(Op(kind, started, time.monotonic()))
    except asyncpg.PostgresError as exc:
        rec.ops.append(Op(kind, started, time.monotonic(), f"{exc.sqlstate} {exc}"))


async def _writer(url: str, ids: list[str], interval: float, stop: asyncio.Event, rec: Recording) -> None:
    conn = await asyncpg.connect(url, server_settings={"application_name": "bench-writer"})

    async def write() -> None:
        async with conn.transaction():
            context = random.choice(ids)
            version = await conn.fetchval(WRITE_BUMP, context)
            await conn.execute(WRITE_INSERT, context, version, "a message written during the migration")

    try:
        await _paced(interval, stop, lambda: _timed("write", write, rec))
    finally:
        await conn.close()


async def _reader(url: str, ids: list[str], interval: float, stop: asyncio.Event, rec: Recording) -> None:
    conn = await asyncpg.connect(url, server_settings={"application_name": "bench-reader"})
    turn = 0

    async def read() -> None:
        nonlocal turn
        turn += 1
        await conn.fetch(READS[turn % len(READS)], random.choice(ids))

    try:
        await _paced(interval, stop, lambda: _timed("read", read, rec))
    finally:
        await conn.close()


async def _watcher(url: str, stop: asyncio.Event, rec: Recording) -> None:
    conn = await asyncpg.connect(url, server_settings={"application_name": "watcher"})

    async def watch() -> None:
        phase, waiting, activity = await conn.fetchrow(WATCH)
        rec.watches.append(Watch(time.monotonic(), phase or "", int(waiting), activity or ""))

    try:
        await _paced(0.05, stop, watch)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running(url: str, ids: list[str], load: Load, rec: Recording) -> AsyncIterator[None]:
    """The load runs for the duration of the block; every connection is closed on the way out."""
    stop = asyncio.Event()
    tasks = [
        *(_writer(url, ids, load.writers / load.writes_per_s, stop, rec) for _ in range(load.writers)),
        *(_reader(url, ids, load.readers / load.reads_per_s, stop, rec) for _ in range(load.readers)),
        _watcher(url, stop, rec),
    ]
    running_tasks = [asyncio.create_task(t) for t in tasks]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*running_tasks)
