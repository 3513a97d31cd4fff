"""A database our migrator made, the application's databases, and the live schema read back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from schema.live import read_live_schema
from schema.model import Schema
from schema.snapshot import load_snapshots
from tests.conftest import Database
from tests.fixtures.drizzle_app import add_orphaned_fork, make_application_database
from tests.migrator.conftest import MIGRATIONS

VERSIONS = sorted(int(p.stem) for p in (MIGRATIONS / "snapshots").glob("*.json"))
LATEST = max(VERSIONS)


def live_schema(url: str) -> Schema:
    async def read() -> Schema:
        conn = await asyncpg.connect(url)
        try:
            return await read_live_schema(conn)
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.fixture(scope="session")
def snapshots() -> dict[int, Schema]:
    return load_snapshots(MIGRATIONS, VERSIONS)


@pytest.fixture
def app_v020(database: Database) -> Database:
    make_application_database(database, "v0.2.0")
    return database


@pytest.fixture
def app_current(database: Database) -> Database:
    make_application_database(database, "current")
    return database


@pytest.fixture
def app_orphaned_fork(app_current: Database) -> Database:
    add_orphaned_fork(app_current)
    return app_current
