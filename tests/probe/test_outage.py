"""A database that freezes, dies and comes back, on a server of the test's own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir
from probe.app import MONITOR, create_app
from tests.conftest import Database
from tests.probe.conftest import make_settings, ready_database, until

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
INTERVAL, TIMEOUT = 0.5, 0.3


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """Not the session server: these tests stop and kill it."""
    with running_server(wheel_bin_dir(16)) as server:
        server.psql("CREATE EXTENSION vector")
        yield server


def server_processes(server: PostgresServer) -> list[int]:
    """The postmaster and its children (backends, checkpointer, walwriter...)."""
    postmaster = server.postmaster_pid()
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


async def ready(client: Client) -> bool:
    async with client.get("/readyz") as response:
        return response.status == 200


async def not_ready(client: Client) -> bool:
    return not await ready(client)


async def start(aiohttp_client: ClientFactory, server: PostgresServer, migrations: Path) -> Client:
    """The probe, ready: an empty migrations folder is refused, so the server gets these applied."""
    ready_database(Database(server, "postgres"), migrations)
    settings = make_settings(
        server.url(), migrations, PROBE_INTERVAL=str(INTERVAL), PROBE_TIMEOUT=str(TIMEOUT)
    )
    client = await aiohttp_client(create_app(settings, CollectorRegistry()))
    await until(lambda: ready(client), 10, "ready before the outage")
    return client


async def test_frozen_database_fails_readiness_within_a_round_while_liveness_stays_fast(
    aiohttp_client: ClientFactory, own_server: PostgresServer, migrations_dir: Path
) -> None:
    client = await start(aiohttp_client, own_server, migrations_dir)
    monitor = client.app[MONITOR]
    frozen = server_processes(own_server)
    for pid in frozen:  # postmaster first, so it cannot start a child we would miss
        os.kill(pid, signal.SIGSTOP)
    try:
        took = await until(lambda: not_ready(client), INTERVAL + TIMEOUT + 0.5, "readyz 503 after the freeze")
        assert took <= INTERVAL + TIMEOUT + 0.2
        rounds = monitor.rounds
        # Liveness while frozen, for three more rounds: always 200, always quick.
        while monitor.rounds < rounds + 3:
            started = time.monotonic()
            async with client.get("/livez") as response:
                assert response.status == 200
                body = await response.json()
            assert time.monotonic() - started < 0.1
            assert body["status"] in ("degraded", "healthy")
        assert body["checks"]["database"]["error"] == "timeout"
        assert body["status"] == "degraded"
    finally:
        for pid in reversed(frozen):
            os.kill(pid, signal.SIGCONT)
    await until(lambda: ready(client), 5 * INTERVAL + 5, "readyz 200 after SIGCONT")


async def test_killed_database_fails_readiness_and_recovers_after_restart(
    aiohttp_client: ClientFactory, own_server: PostgresServer, migrations_dir: Path
) -> None:
    client = await start(aiohttp_client, own_server, migrations_dir)
    for pid in server_processes(own_server):  # the whole server, as when its container is OOM-killed
        os.kill(pid, signal.SIGKILL)
    await until(lambda: not_ready(client), INTERVAL + TIMEOUT + 0.5, "readyz 503 after SIGKILL")
    async with client.get("/livez") as response:
        assert response.status == 200
        body = await response.json()
    assert body["checks"]["database"]["error"] in ("connection refused", "connection lost")
    # The killed processes stay zombies here (this container's PID 1 does not reap orphans), so
    # their lock files look owned; a restarted container would not have them. Then crash recovery.
    (own_server.data_dir / "postmaster.pid").unlink()
    (own_server.socket_dir / f".s.PGSQL.{own_server.port}.lock").unlink(missing_ok=True)
    own_server.resume()
    await until(lambda: ready(client), 10, "readyz 200 after the restart")
