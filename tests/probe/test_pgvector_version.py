"""The probe and the migrator agree on pgvector: a version the preflight refuses fails the probe's
check, both saying which version is installed and which one is needed (schema/pgvector.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from probe.app import MONITOR, create_app
from schema.pgvector import needed_text
from tests.conftest import Database
from tests.metric_families import sample_value
from tests.migrator.conftest import migrator_env, run_inprocess
from tests.probe.conftest import make_settings, until


async def probe_pgvector(url: str, directory: Path) -> tuple[int, dict[str, Any], str]:
    """After the probe's first round: `/readyz/pgvector`'s status and JSON, and the exposition."""
    app = create_app(make_settings(url, directory), CollectorRegistry())
    async with TestClient(TestServer(app)) as client:
        monitor = client.app[MONITOR]

        async def one_round() -> bool:
            return monitor.latest is not None

        await until(one_round, 10, "the first check round")
        async with client.get("/readyz/pgvector", headers={"Accept": "application/json"}) as response:
            status, body = response.status, await response.json()
        async with client.get("/metrics") as response:
            return status, body, await response.text()


def test_a_pgvector_the_preflight_refuses_fails_the_probe_check_naming_the_same_versions(
    database: Database, migrations_dir: Path
) -> None:
    database.psql("CREATE EXTENSION vector")
    database.psql("UPDATE pg_extension SET extversion = '0.4.4' WHERE extname = 'vector'")

    # The migrator installs signal handlers: it runs here, on the main thread, before the probe.
    refused = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(migrations_dir)))
    assert refused.code == 4, refused.stderr
    assert f"pgvector 0.4.4 is installed in database {database.name} but {needed_text()}" in (
        refused.final_message
    )

    status, body, exposition = asyncio.run(probe_pgvector(database.url, migrations_dir))
    assert status == 503
    assert body["checks"]["pgvector"] == {
        "status": "installed",
        "version": "0.4.4",
        "error": f"pgvector 0.4.4 is installed but {needed_text()} (run kata-migrate)",
    }
    assert sample_value(exposition, "kata_db_pgvector_installed") == 1
