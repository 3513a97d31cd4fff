"""`python -m probe` connected as the probe role of deploy/roles.sql, after the owner's `up`
granted it the ledger: ready, every check passing, and no access to the application's data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import asyncpg
import pytest

from tests.conftest import Roles
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_process
from tests.probe.conftest import FAST, ProbeProcess, until, wait_listening

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
    env = {
        "DATABASE_URL": roles.url(roles.probe),
        "MIGRATIONS_DIR": str(MIGRATIONS),
        "PROBE_HOST": "127.0.0.1",
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
    assert checks["pgvector"]["status"] == "installed", checks


async def test_probe_role_cannot_read_contexts_or_messages(roles: Roles) -> None:
    await asyncio.to_thread(migrate_as_owner, roles)
    conn = await asyncpg.connect(roles.url(roles.probe))
    try:
        for table in ("contexts", "messages"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        assert await conn.fetchval("SELECT count(*) FROM kata_schema_migrations") == 5
    finally:
        await conn.close()
