"""Through a real PgBouncer in transaction mode: no prepared-statement errors, pooled observed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from pgconn.connect import connect_options
from pgconn.dsn import parse_database_url
from probe.app import MONITOR, REGISTRY, create_app
from tests.conftest import Database, require_system_package
from tests.pgbouncer import PGBOUNCER, running_pgbouncer
from tests.probe.conftest import make_settings, ready_database, until

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
USER, PASSWORD = "kata_app", "bouncer-pw-51"
CLIENTS, QUERIES_EACH = 20, 25


async def busy_client(url: str, number: int) -> int:
    """One application-like client: parameterised queries, as the probe's options configure them."""
    options = connect_options(parse_database_url(url), application_name=f"load-{number}", timeout=5)
    conn = await asyncpg.connect(**options)
    try:
        total = 0
        for i in range(QUERIES_EACH):
            total += await conn.fetchval("SELECT $1::int + $2::int", number, i)
            async with conn.transaction():
                await conn.fetchval("SELECT pg_backend_pid()")
        return total
    finally:
        await conn.close()


async def test_probe_behind_transaction_pooler_is_ready_and_observes_pooling(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_system_package(PGBOUNCER, "pgbouncer")
    ready_database(database, migrations_dir)
    database.server.create_role(USER, PASSWORD)
    database.psql(f"GRANT SELECT ON kata_schema_migrations TO {USER}")
    with running_pgbouncer(database.server, {USER: PASSWORD}, pool_size=4) as bouncer:
        url = bouncer.url(database.name, USER, PASSWORD)
        client = await aiohttp_client(create_app(make_settings(url, migrations_dir), CollectorRegistry()))
        monitor = client.app[MONITOR]

        async def ready() -> bool:
            async with client.get("/readyz", headers={"Accept": "application/json"}) as response:
                return response.status == 200

        # 20 concurrent clients share 4 server connections while the probe runs its rounds.
        results = await asyncio.gather(*(busy_client(url, n) for n in range(CLIENTS)))
        assert results == [n * QUERIES_EACH + sum(range(QUERIES_EACH)) for n in range(CLIENTS)]
        await until(ready, 10, f"ready through PgBouncer: {monitor.latest}")
        rounds = monitor.rounds
        registry = client.app[REGISTRY]
        failed = {"check": "database", "result": "failed"}
        # While 20 clients held the 4 server connections, a round on a slow machine may have
        # waited past its timeout: that is speed. Named prepared statements would fail every
        # round, the quiet ones after the load too: that is the bug this test is for.
        failed_under_load = registry.get_sample_value("kata_db_checks_total", failed) or 0

        async def two_more_rounds() -> bool:
            return monitor.rounds >= rounds + 2

        await until(two_more_rounds, 10, "two more rounds")
        async with client.get("/healthz") as response:
            body = await response.json()
        assert body["status"] == "healthy"
        assert body["checks"]["database"]["pooled"] is True
        assert body["checks"]["database"]["pooledSource"] == "observed"
        assert registry.get_sample_value("kata_db_pooled") == 1
        assert registry.get_sample_value("kata_db_checks_total", failed) == failed_under_load
        not_ready = [r.__dict__["reasons"] for r in caplog.records if r.__dict__.get("event") == "not_ready"]
        speed = (": timeout", ": database unavailable")  # a slow round, and the checks it held up
        assert all(reason.endswith(speed) for reasons in not_ready for reason in reasons), not_ready
        assert "prepared statement" not in bouncer.logs()
