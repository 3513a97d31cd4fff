"""`python -m probe` connected as the probe role of deploy/roles.sql, after the owner's `up`
granted it the ledger: ready, every check passing, and no access to the application's data."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from probe.app import MONITOR, create_app
from probe.settings import ProbeSettings
from tests.conftest import Roles
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_process
from tests.probe.conftest import FAST, ProbeProcess, until, wait_listening
from tests.schema.conftest import LATEST

pytestmark = pytest.mark.asyncio
StartProbe = Callable[..., ProbeProcess]


def migrate_as_owner(roles: Roles) -> None:
    env = migrator_env(roles.url(roles.owner), MIGRATOR_APP_ROLE=roles.app, MIGRATOR_PROBE_ROLE=roles.probe)
    outcome = run_process(["up"], env)  # a real process: signal handlers need the main thread
    assert outcome.code == 0, outcome.stderr


async def test_probe_as_the_probe_role_is_ready_with_every_check_passing(
    roles: Roles, probe_process: StartProbe
) -> None:
    await asyncio.to_thread(migrate_as_owner, roles)
    # A schema named like the probe role comes first in its default search_path ("$user",
    # public): the catalog comparison must still read public, not this empty look-alike.
    roles.database.psql(f'CREATE SCHEMA "{roles.probe}" AUTHORIZATION "{roles.probe}"')
    roles.database.psql(f'CREATE TABLE "{roles.probe}".contexts (id int)')
    env = {
        "DATABASE_URL": roles.url(roles.probe),
        "MIGRATIONS_DIR": str(MIGRATIONS),
        "PROBE_HOST": "127.0.0.1",
        "PROBE_SCHEMA_INTERVAL": "0",
    }
    probe = probe_process({**env, **FAST})
    async with aiohttp.ClientSession() as session:
        await wait_listening(probe, session)

        async def ready() -> bool:
            async with session.get(probe.base_url + "/readyz") as response:
                return response.status == 200

        await until(ready, 15, "/readyz answers 200 as the probe role")
        async with session.get(probe.base_url + "/readyz?verbose") as response:
            verbose = await response.text()
        async with session.get(probe.base_url + "/healthz") as response:
            checks = (await response.json())["checks"]
    assert "[-]" not in verbose and "[+]schema ok" in verbose, verbose
    assert checks["schema"]["status"] == "current" and checks["schema"]["pending"] == 0, checks
    assert checks["schema"]["drift"] == [], checks  # the catalog read works for the probe role
    assert checks["pgvector"]["status"] == "installed", checks


async def test_probe_role_cannot_read_contexts_or_messages(roles: Roles) -> None:
    await asyncio.to_thread(migrate_as_owner, roles)
    conn = await asyncpg.connect(roles.url(roles.probe))
    try:
        for table in ("contexts", "messages"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        assert await conn.fetchval("SELECT count(*) FROM kata_schema_migrations") == LATEST
    finally:
        await conn.close()


async def test_probe_role_without_connect_reports_permission_denied(
    roles: Roles,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    database = roles.database
    database.psql(f"REVOKE CONNECT ON DATABASE {database.name} FROM {roles.probe}")
    settings = ProbeSettings.from_values(
        {"DATABASE_URL": roles.url(roles.probe), "MIGRATIONS_DIR": str(MIGRATIONS), **FAST}
    )
    client = await aiohttp_client(create_app(settings, CollectorRegistry()))
    monitor = client.app[MONITOR]

    async def one_round() -> bool:
        return monitor.latest is not None

    await until(one_round, 10, "the first check round")
    async with client.get("/healthz") as response:
        body = await response.json()
    # A GRANT fixes it, not a wait: the fixed text says which, never the server's message.
    assert body["checks"]["database"]["error"] == "permission denied", body
