"""Liveness fails when the monitor is stuck: no round has finished within the staleness bound.

A round is bounded by the runner's timeout, so the only way to get stuck is a check that defeats
that bound: one that swallows the cancellation the timeout sends (as a misbehaving driver call
can). `Gate` makes the real database check behave like that on demand, then lets it go, so each test
shows liveness falling to 503 while the loop is wedged and coming back once it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from pgconn.dsn import parse_database_url
from pgconn.pooler import PoolerSetting
from probe.app import MONITOR, create_app
from probe.checks import DatabaseCheck, PgvectorCheck, RoundTrip, SchemaCheck
from probe.connection import HeldConnection
from probe.monitor import Monitor
from probe.pooled import PoolerObserver
from schema.catalog import read_catalog
from tests.conftest import Database
from tests.probe.conftest import make_settings, ready_database, until

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
INTERVAL = 0.2  # the settings refuse a timeout longer than the interval
TIMEOUT = 0.2
# The documented contract (docs/probe.md): stuck after staleness (3 x interval) plus one round's timeout.
BOUND = 3 * INTERVAL + TIMEOUT


class Gate:
    """Wraps a check; while closed, the check ignores cancellation and never returns."""

    def __init__(self) -> None:
        self.closed = False
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()  # a call is wedged behind the closed gate
        self.left = asyncio.Event()  # that call went on after the gate opened

    def close(self) -> None:
        self.closed = True
        self.opened.clear()
        self.entered.clear()
        self.left.clear()

    async def open(self) -> None:
        """Let a wedged call go, and wait until it has: until then it would swallow a stop() too."""
        self.closed = False
        self.opened.set()
        if self.entered.is_set():
            await asyncio.wait_for(self.left.wait(), 10)

    async def passage(self) -> None:
        """Return at once while open; while closed, wait for the gate and swallow every cancellation."""
        if self.closed:
            self.entered.set()
            while not self.opened.is_set():
                with contextlib.suppress(asyncio.CancelledError):  # the bug: timeout is swallowed
                    await self.opened.wait()
            self.left.set()


class GatedDatabaseCheck(DatabaseCheck):
    """The real database check behind a gate."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def run(self, conn: asyncpg.Connection) -> RoundTrip:
        await self._gate.passage()
        return await super().run(conn)


def gated_checks(migrations: Path, gate: Gate) -> tuple[DatabaseCheck, PgvectorCheck, SchemaCheck]:
    return (GatedDatabaseCheck(gate), PgvectorCheck(), SchemaCheck(read_catalog(migrations)))


def liveness_app(database: Database, migrations: Path, gate: Gate) -> web.Application:
    """The production app, its rounds every INTERVAL, around a gated database check."""
    settings = make_settings(
        database.url, migrations, PROBE_INTERVAL=str(INTERVAL), PROBE_TIMEOUT=str(TIMEOUT)
    )
    return create_app(settings, CollectorRegistry(), checks=gated_checks(migrations, gate))


def gated_monitor(
    database: Database, migrations: Path, gate: Gate, clock: Callable[[], float]
) -> tuple[HeldConnection, Monitor]:
    """A bare monitor on a clock of the test's own, to find liveness's exact bound."""
    url = parse_database_url(database.url)
    connection = HeldConnection(url, application_name="kata-liveness-test", timeout=TIMEOUT)
    monitor = Monitor(
        connection=connection,
        checks=gated_checks(migrations, gate),
        observer=PoolerObserver(url, PoolerSetting.AUTO),
        interval=INTERVAL,
        timeout=TIMEOUT,
        clock=clock,
    )
    return connection, monitor


@contextlib.asynccontextmanager
async def opened_at_exit(gate: Gate) -> AsyncIterator[Gate]:
    """Always release a wedged check, or stopping the monitor at teardown would hang too."""
    try:
        yield gate
    finally:
        await gate.open()


async def get(client: Client, path: str) -> tuple[int, dict[str, Any]]:
    async with client.get(path, headers={"Accept": "application/json"}) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def test_livez_and_healthz_answer_503_while_the_monitor_is_stuck_and_200_once_it_runs_again(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    async with opened_at_exit(Gate()) as gate:
        client = await aiohttp_client(liveness_app(database, migrations_dir, gate))
        monitor = client.app[MONITOR]

        async def rounds_span_the_bound() -> bool:
            # Enough rounds that a monitor judged on its start time alone would already look stuck.
            return monitor.rounds * INTERVAL > 2 * BOUND

        await until(rounds_span_the_bound, 10, "rounds covering twice the liveness bound")
        for path in ("/livez", "/healthz", "/readyz"):
            status, body = await get(client, path)
            assert (status, body["status"]) == (200, "healthy"), (path, body)

        gate.close()
        await until(lambda: _is_set(gate.entered), 10, "a round to wedge on the gate")
        wedged_rounds = monitor.rounds

        async def liveness_fails() -> bool:
            return (await get(client, "/livez"))[0] == 503

        await until(liveness_fails, 10, "/livez to report the stuck monitor")
        assert monitor.rounds == wedged_rounds  # no round finished: stuck, not merely slow
        age = monitor.age()
        assert age is not None and age > BOUND
        for path in ("/livez", "/healthz"):
            status, body = await get(client, path)
            assert (status, body["status"]) == (503, "unhealthy"), (path, body)
        status, body = await get(client, "/readyz")
        assert status == 503
        assert body["checks"]["database"]["error"].startswith("stale: last round ended")

        await gate.open()

        async def liveness_recovers() -> bool:
            return (await get(client, "/livez"))[0] == 200

        await until(liveness_recovers, 10, "/livez to recover once rounds finish again")
        assert monitor.rounds > wedged_rounds


async def test_liveness_turns_false_exactly_past_staleness_plus_timeout_on_the_monitor_clock(
    database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    now = [1000.0]
    gate = Gate()
    gate.close()  # the very first round wedges: no tick after start()
    async with opened_at_exit(gate):
        connection, monitor = gated_monitor(database, migrations_dir, gate, clock=lambda: now[0])
        assert not monitor.alive()  # not started: nothing runs
        monitor.start()
        try:
            await until(lambda: _is_set(gate.entered), 10, "the first round to wedge")
            assert monitor.alive()
            now[0] += BOUND  # the documented figure, against the monitor's own rule
            assert monitor.alive()  # at the bound: still given the benefit of the doubt
            now[0] += 0.001
            assert not monitor.alive()
            assert monitor.latest is None and monitor.fresh() is None
        finally:
            await gate.open()
            await monitor.stop()
            await connection.close()
    assert not monitor.alive()  # stopped: the task is done


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()
