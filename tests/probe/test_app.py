"""The HTTP contract, through `create_app` against a real PostgreSQL so the cleanup contexts run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from probe.app import CHECKS, MONITOR, create_app
from probe.checks import PgvectorCheck, default_checks
from schema.catalog import read_catalog
from tests.conftest import Database
from tests.metric_families import sample_value
from tests.probe.conftest import (
    TRANSACTIONS_PER_CONNECTION,
    apply_migrations,
    make_settings,
    no_sessions,
    ready_database,
    transactions,
    until,
)

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
JSON = {"Accept": "application/json"}


async def start_probe(aiohttp_client: ClientFactory, url: str, directory: Path, **extra: str) -> Client:
    client = await aiohttp_client(create_app(make_settings(url, directory, **extra), CollectorRegistry()))
    monitor = client.app[MONITOR]

    async def one_round() -> bool:
        return monitor.latest is not None

    await until(one_round, 10, "the first check round")
    return client


async def status_of(client: Client, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with client.get(path, headers=headers) as response:
        return response.status, await response.text()


async def test_all_endpoints_answer_200_when_every_check_passes(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    checks = [f"/readyz/{check.name}" for check in client.app[CHECKS]]
    assert checks[:3] == ["/readyz/database", "/readyz/pgvector", "/readyz/schema"]
    for path in ("/livez", "/healthz", "/readyz", *checks):
        status, _ = await status_of(client, path)
        assert status == 200, path
    assert await status_of(client, "/readyz") == (200, "ok\n")
    status, text = await status_of(client, "/readyz?verbose")
    assert status == 200
    names = [check.name for check in client.app[CHECKS]]
    assert text.splitlines() == [
        "[+]shutdown ok",
        *(f"[+]{name} ok" for name in names),
        "readyz check passed",
    ]
    async with client.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert sample_value(await response.text(), "kata_db_up") == 1


async def test_json_body_matches_the_original_health_endpoint_shape(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    for path, headers in (("/healthz", None), ("/livez", None), ("/readyz", JSON)):
        async with client.get(path, headers=headers) as response:
            assert response.content_type == "application/json", path
            body: dict[str, Any] = await response.json()
        assert set(body) >= {"status", "timestamp", "version", "checks"}
        assert body["status"] == "healthy"
        datetime.fromisoformat(body["timestamp"])
        database_check = body["checks"]["database"]
        assert database_check["status"] == "connected"
        assert isinstance(database_check["latencyMs"], float) and database_check["latencyMs"] > 0
        assert database_check["pooled"] is False
        assert "error" not in database_check
        assert body["checks"]["pgvector"]["status"] == "installed"
        assert body["checks"]["pgvector"]["version"].count(".") == 2
        assert body["checks"]["schema"] == {
            "status": "current",
            "version": 2,
            "expected": 2,
            "pending": 0,
            "drift": [],
        }


async def test_pending_migrations_fail_readiness_but_not_liveness(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    database.psql("CREATE EXTENSION vector")
    apply_migrations(database, migrations_dir, upto=1)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    assert (await status_of(client, "/livez"))[0] == 200
    status, text = await status_of(client, "/readyz")
    assert status == 503
    assert "[-]schema failed: 1 pending" in text.splitlines()
    assert text.splitlines()[-1] == "readyz check failed"
    assert await status_of(client, "/readyz/schema") == (503, "[-]schema failed: 1 pending\n")
    assert (await status_of(client, "/readyz/database"))[0] == 200
    assert (await status_of(client, "/readyz?exclude=schema"))[0] == 200
    async with client.get("/healthz") as response:
        body = await response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["schema"] == {
        "status": "pending",
        "version": 1,
        "expected": 2,
        "pending": 1,
        "drift": [],
        "error": "1 pending",
    }


async def test_missing_pgvector_fails_only_its_check_and_exclude_skips_it(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    apply_migrations(database, migrations_dir)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    status, text = await status_of(client, "/readyz?verbose")
    assert status == 503
    assert "[-]pgvector failed: extension vector is not installed (run kata-migrate)" in text
    status, text = await status_of(client, "/readyz?verbose&exclude=pgvector")
    assert status == 200
    assert "[+]pgvector excluded: failed" in text.splitlines()
    status, text = await status_of(client, "/readyz?verbose&exclude=nosuch&exclude=pgvector")
    assert status == 200
    assert "no matches for 'nosuch'" in text
    async with client.get("/readyz/pgvector", headers=JSON) as response:
        assert response.status == 503
        body = await response.json()
    assert list(body["checks"]) == ["pgvector"]
    assert body["checks"]["pgvector"]["status"] == "missing"


async def test_unknown_check_path_and_method_get_short_errors(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    status, text = await status_of(client, "/readyz/nosuch")
    assert status == 404 and "no check named 'nosuch'" in text and len(text) < 200
    status, text = await status_of(client, "/nosuch")
    assert status == 404 and len(text) < 100
    async with client.post("/readyz") as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert len(await response.text()) < 100
    for path in ("/livez", "/healthz", "/readyz", "/readyz/schema", "/metrics"):
        async with client.head(path) as response:
            assert response.status in (200, 503), path
            assert await response.read() == b""


async def probe_transactions(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path, requests: int
) -> tuple[int, int]:
    """Transactions the server counted in `database` while a probe ran its rounds and served
    `requests` rounds of requests to every route, and how many check rounds it ran."""
    await until(partial(no_sessions, database), 10, "earlier sessions gone")
    before = transactions(database)
    client = await start_probe(
        aiohttp_client, database.url, migrations_dir, PROBE_INTERVAL="30", PROBE_TIMEOUT="2"
    )
    for _ in range(requests):
        for path in ("/readyz", "/readyz/schema", "/healthz", "/livez", "/metrics"):
            await status_of(client, path, JSON)
    await client.close()  # the cleanup contexts stop the monitor and close its connection
    rounds = client.app[MONITOR].rounds
    await until(partial(no_sessions, database), 10, "the probe's session gone")
    return transactions(database) - before, rounds


async def test_requests_never_query_the_database(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    """Counted by the server: every transaction in the database while the probe served 1,000
    requests, against what its rounds cost when it serves none (measured, so the bound follows
    the list of checks). A handler querying would add one per request.
    """
    ready_database(database, migrations_dir)
    idle, idle_rounds = await probe_transactions(aiohttp_client, database, migrations_dir, requests=0)
    per_round = (idle - TRANSACTIONS_PER_CONNECTION) / idle_rounds
    # The calibration must not absorb a round that grew expensive: today 5 for 3 checks (the
    # schema check reads the ledger and the catalog apart, the round observes its connection).
    assert per_round <= 2 * len(default_checks(read_catalog(migrations_dir))), per_round
    used, rounds = await probe_transactions(aiohttp_client, database, migrations_dir, requests=200)
    # One connection, held throughout: a healthy database gives the probe no reason to reconnect.
    assert used <= TRANSACTIONS_PER_CONNECTION + per_round * rounds, (used, rounds, per_round)


async def test_unreachable_database_reports_classified_error_and_stays_live(
    aiohttp_client: ClientFactory, migrations_dir: Path, unused_tcp_port: int
) -> None:
    url = f"postgresql://kata:sentinel-pw-93@127.0.0.1:{unused_tcp_port}/kata?sslmode=disable"
    client = await start_probe(aiohttp_client, url, migrations_dir)
    async with client.get("/healthz") as response:
        assert response.status == 200
        text = await response.text()
    body = json.loads(text)
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == {
        "status": "disconnected",
        "pooled": False,
        "pooledSource": "default",
        "error": "connection refused",
    }
    assert body["checks"]["schema"]["error"] == "database unavailable"
    assert (await status_of(client, "/readyz"))[0] == 503
    async with client.get("/metrics") as response:
        assert sample_value(await response.text(), "kata_db_up") == 0


@pytest.mark.parametrize("names", [("database", "database"), ("database", "pg vector"), ("Schema",)])
async def test_create_app_refuses_check_names_that_cannot_be_routes_and_labels(
    migrations_dir: Path, names: tuple[str, ...]
) -> None:
    checks = [type(f"Check{i}", (PgvectorCheck,), {"name": name})() for i, name in enumerate(names)]
    settings = make_settings("postgresql://probe@127.0.0.1:1/kata", migrations_dir)
    with pytest.raises(ValueError, match="check names must be unique words"):
        create_app(settings, CollectorRegistry(), checks=checks)
