"""The background loop: one round of checks per interval, the latest result kept for readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from pgconn.errors import classify_error
from probe.check import Check, CheckResult, Snapshot, run_check, skipped
from probe.connection import HeldConnection
from probe.metrics import ProbeMetrics
from probe.pooled import PoolerObserver
from probe.settings import staleness, stuck_after

log = logging.getLogger("probe.monitor")


class Monitor:
    """Runs rounds one at a time (single flight) and publishes the latest Snapshot.

    Readers call `latest`, `fresh` and `alive`: they never touch the database, so its load
    is one round per interval whatever the request rate.
    """

    def __init__(
        self,
        *,
        connection: HeldConnection,
        checks: Sequence[Check[Any]],
        observer: PoolerObserver,
        interval: float,
        timeout: float,
        metrics: ProbeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._checks = tuple(checks)
        self._observer = observer
        self.interval = interval
        self.timeout = timeout
        self._metrics = metrics
        self._clock = clock
        self.latest: Snapshot | None = None
        self.rounds = 0
        self._last_tick = clock()
        self._task: asyncio.Task[None] | None = None
        self._was_ok: bool | None = None

    @property
    def stuck_after(self) -> float:
        """Liveness fails without a finished round for this long (probe.settings.stuck_after)."""
        return stuck_after(self.interval, self.timeout)

    def stale(self) -> bool:
        """The one judgement of staleness: a round finished, longer ago than the bound the settings
        define (probe.settings.staleness); its results then count as failing."""
        snapshot = self.latest
        return snapshot is not None and self._clock() - snapshot.finished > staleness(self.interval)

    def fresh(self) -> Snapshot | None:
        """The latest snapshot unless it is stale; None before the first round too."""
        return None if self.stale() else self.latest

    def age(self) -> float | None:
        return None if self.latest is None else self._clock() - self.latest.finished

    def alive(self) -> bool:
        """The loop runs and has finished a round (or started) recently: it is not stuck."""
        if self._task is None or self._task.done():
            return False
        return self._clock() - self._last_tick <= self.stuck_after

    def database_up(self) -> bool:
        """The latest round is fresh and the check that speaks for the connection passed."""
        snapshot = self.fresh()
        return snapshot is not None and all(
            snapshot.results[check.name].ok for check in self._checks if check.covers_connection
        )

    def start(self) -> None:
        self._last_tick = self._clock()
        self._task = asyncio.create_task(self._run(), name="probe-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancellation we asked for
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            try:
                self.publish(await self.run_round())
            except Exception:  # a bug must not end the loop silently: log it, keep going
                log.exception("monitor round crashed", extra={"event": "round_crashed"})
            self._last_tick = self._clock()
            next_round += self.interval
            now = loop.time()
            if next_round < now:  # a slow round: skip the missed slots instead of bursting
                next_round = now + self.interval
            await asyncio.sleep(next_round - now)

    async def run_round(self) -> Snapshot:
        """Acquire, then run each check, the whole round bounded by the timeout. Never raises."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        started = time.perf_counter()
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await stack.enter_async_context(self._connection.use())
                    await self._observe(conn)
            except Exception as exc:  # no usable connection: the check covering it carries why
                self._connection.discard()
                results = self._unconnected(classify_error(exc), time.perf_counter() - started)
            else:
                results = await self._run_checks(conn, deadline, time.perf_counter() - started)
        return Snapshot(
            results={check.name: results.get(check.name) or skipped(check.name) for check in self._checks},
            pooled=self._observer.verdict,
            finished=self._clock(),
            finished_at=datetime.now(UTC),
        )

    def _unconnected(self, reason: str, elapsed: float) -> dict[str, CheckResult[Any]]:
        """The round without a connection: the covering check fails with why; the rest will skip."""
        return {
            check.name: CheckResult(check.name, False, reason, elapsed, raised=True)
            for check in self._checks
            if check.covers_connection
        }

    async def _run_checks(
        self, conn: asyncpg.Connection, deadline: float, acquired: float
    ) -> dict[str, CheckResult[Any]]:
        """Each check in order; after the covering check fails, the rest skip (nothing to ask)."""
        results: dict[str, CheckResult[Any]] = {}
        for check in self._checks:
            result = await run_check(check, conn, deadline)
            if check.covers_connection:  # acquiring the connection is part of what it measures
                result = replace(result, duration=result.duration + acquired)
            results[check.name] = result
            if check.covers_connection and not result.ok:
                break
        if any(result.raised for result in results.values()):
            self._connection.discard()  # an exception left the connection in an unknown state
        return results

    async def _observe(self, conn: asyncpg.Connection) -> None:
        """Feed pooler detection: the backend pid this transaction ran on, against the announced one."""
        backend_pid = await conn.fetchval("SELECT pg_backend_pid()")
        self._observer.observe(conn.get_server_pid(), int(backend_pid))

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the latest, update the metrics, and log a change of state once."""
        self.latest = snapshot
        self.rounds += 1
        if self._metrics is not None:
            record(self._metrics, snapshot)
        if snapshot.ok != self._was_ok:
            if snapshot.ok:
                log.info("database checks pass", extra={"event": "ready", "pooled": snapshot.pooled.pooled})
            else:
                log.warning(
                    "database checks fail",
                    extra={"event": "not_ready", "reasons": snapshot.failures()},
                )
            self._was_ok = snapshot.ok


def record(metrics: ProbeMetrics, snapshot: Snapshot) -> None:
    """Copy one round's outcome into the metrics, each check's own through its recorder."""
    for result in snapshot.results.values():
        if result.ran:
            metrics.check_duration.labels(check=result.name).observe(result.duration)
        metrics.checks.labels(check=result.name, result="ok" if result.ok else "failed").inc()
        metrics.recorders[result.name](result)
    if snapshot.ok:
        metrics.last_success.set(snapshot.finished_at.timestamp())
    metrics.pooled.set(1 if snapshot.pooled.pooled else 0)
