"""The application's writes while a migrator works, watched from outside: real connections writing
in a thread of their own (each write's latency recorded), and a sampler that records every writer
the server shows waiting on a heavyweight lock, with how long it has waited by the server's clock
and who blocks it."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import asyncpg

from tests.polling import wait_until

WRITER_NAME: Final = "test-writer"
# One statement, so a writer holds its row and table locks only while the server executes it: no
# client round trip (or a client thread starved of CPU) inside a transaction stretches a lock.
WRITE: Final = """
WITH bumped AS (
    UPDATE contexts SET message_count = message_count + 1, latest_version = latest_version + 1,
                        updated_at = now()
    WHERE id = $1 RETURNING id, latest_version
)
INSERT INTO messages (context_id, version, role, content, token_count, embedding)
SELECT id, latest_version, 'user', 'written while the migrator ran', 10, $2::text::vector FROM bumped
"""
# `extend` (two inserts growing messages at once) is the writers' own contention, not a lock
# anything of the migrator's holds.
LOCK_WAITS: Final = f"""
SELECT w.pid, w.wait_event, extract(epoch FROM clock_timestamp() - w.query_start) * 1000 AS waited_ms,
       coalesce((SELECT array_agg(b.application_name || ': ' || b.query)
                 FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid))), '{{}}') AS blockers
FROM pg_stat_activity w
WHERE w.application_name = '{WRITER_NAME}' AND w.wait_event_type = 'Lock' AND w.wait_event <> 'extend'
"""
# What the migrator is doing: an index build's phase, or a VALIDATE CONSTRAINT scan; '' otherwise.
MIGRATOR_WORK: Final = """
SELECT coalesce(
    (SELECT 'build: ' || phase FROM pg_stat_progress_create_index
     WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())),
    (SELECT 'validate' FROM pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'kata-migrate@%' AND state = 'active'
       AND query LIKE '%VALIDATE CONSTRAINT%' LIMIT 1),
    '')
"""


@dataclass(frozen=True)
class Write:
    """One write, by the test's monotonic clock; `error` is the SQLSTATE and message, or ''."""

    start: float
    end: float
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass(frozen=True)
class LockWait:
    """A writer seen waiting on a lock: for how long so far (server clock), and its blockers'
    application_name and query."""

    pid: int
    wait_event: str
    waited_ms: float
    blockers: tuple[str, ...]


@dataclass
class Recording:
    writes: list[Write] = field(default_factory=list)
    waits: list[LockWait] = field(default_factory=list)
    # (writes completed so far, what the migrator was doing: MIGRATOR_WORK) at each sample.
    samples: list[tuple[int, str]] = field(default_factory=list)

    def writes_during(self, work: str) -> int:
        """Writes that completed between two samples that both saw the migrator at `work` (`build`
        or `validate`)."""
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(b[0] - a[0] for a, b in pairs if a[1].startswith(work) and b[1].startswith(work))

    def max_write_ms(self) -> float:
        return max((w.ms for w in self.writes), default=0.0)

    def relation_waits(self) -> list[LockWait]:
        """Writers waiting for a table or index lock: what DDL that is not lock-safe makes them do.
        The other kinds (a page of the HNSW index two inserts update at once) are the writes' own."""
        return [w for w in self.waits if w.wait_event == "relation"]

    def longest_wait_ms(self) -> float:
        return max((w.waited_ms for w in self.waits), default=0.0)

    def summary(self, work: str) -> str:
        """The figures a test prints for the record (pytest -s)."""
        return (
            f"{len(self.writes)} writes, {self.writes_during(work)} during {work}, the slowest "
            f"{self.max_write_ms():.1f} ms (client clock); lock waits seen: {len(self.relation_waits())} "
            f"for a table or index, {len(self.waits)} in all, the longest {self.longest_wait_ms():.1f} ms "
            "(server clock)"
        )


class WriteLoad:
    """`writers` connections, each appending to a context of its own (so writers never wait for
    each other's rows) every `interval` seconds, plus the sampler every `sample_interval`."""

    def __init__(
        self, url: str, contexts: list[str], *, interval: float = 0.01, sample_interval: float = 0.01
    ) -> None:
        self.url = url
        self.contexts = contexts
        self.interval = interval
        self.sample_interval = sample_interval
        self.recording = Recording()
        self._stop = threading.Event()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="write-load", daemon=True)

    def __enter__(self) -> Recording:
        self._thread.start()
        wait_until(
            lambda: len(self.recording.writes) >= len(self.contexts) or bool(self._failure),
            what="every writer's first write",
        )
        self._raise_failure()
        return self.recording

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(30)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure:
            raise AssertionError(f"the write load failed: {self._failure[0]!r}") from self._failure[0]

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test by __enter__/__exit__
            self._failure.append(exc)

    async def _main(self) -> None:
        await asyncio.gather(*(self._writer(context) for context in self.contexts), self._sampler())

    async def _writer(self, context: str) -> None:
        conn = await asyncpg.connect(self.url, server_settings={"application_name": WRITER_NAME})
        embedding = "[" + ",".join(f"{random.random():.4f}" for _ in range(1536)) + "]"
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    await conn.execute(WRITE, context, embedding)
                    self.recording.writes.append(Write(started, time.monotonic()))
                except asyncpg.PostgresError as exc:
                    self.recording.writes.append(Write(started, time.monotonic(), f"{exc.sqlstate} {exc}"))
                await asyncio.sleep(self.interval)  # the load's pace, not a synchronisation
        finally:
            await conn.close()

    async def _sampler(self) -> None:
        conn = await asyncpg.connect(self.url, server_settings={"application_name": "test-sampler"})
        try:
            while not self._stop.is_set():
                done = len(self.recording.writes)
                self.recording.waits.extend(
                    LockWait(row["pid"], row["wait_event"], float(row["waited_ms"]), tuple(row["blockers"]))
                    for row in await conn.fetch(LOCK_WAITS)
                )
                self.recording.samples.append((done, await conn.fetchval(MIGRATOR_WORK)))
                await asyncio.sleep(self.sample_interval)  # the sampling cadence
        finally:
            await conn.close()
