"""Reading the live catalog: what a probe role may read, in one query, on PostgreSQL 16 and 18."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import asyncpg
import pytest

from localpg.throwaway import PostgresServer
from schema.drift import DEGRADED, compare
from schema.drizzle import DrizzleLedger, find_drizzle_ledger
from schema.live import read_live_schema
from schema.model import Schema
from tests.conftest import Database
from tests.fixtures.drizzle_app import make_application_database
from tests.migrator.conftest import migrator_env, run_inprocess
from tests.polling import wait_until
from tests.schema.conftest import LATEST, live_schema


class CountingConnection:
    """A real connection that counts the statements sent through it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements: list[str] = []

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return await self.conn.fetchval(query, *args)


def test_the_live_catalog_is_read_in_one_statement(migrated: Database) -> None:
    async def read() -> tuple[Schema, int]:
        conn = await asyncpg.connect(migrated.url)
        try:
            counting = CountingConnection(conn)
            return await read_live_schema(counting), len(counting.statements)  # type: ignore[arg-type]
        finally:
            await conn.close()

    schema, statements = asyncio.run(read())
    assert statements == 1
    assert {t.name for t in schema.tables} >= {"contexts", "messages"}


def test_a_role_without_any_privilege_reads_the_same_schema(migrated: Database) -> None:
    # The probe's role may read no table: the catalog views are all it needs.
    migrated.server.create_role("bare_probe", "bare-pw")
    migrated.psql("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC")
    url = migrated.server.url(migrated.name, user="bare_probe", password="bare-pw")
    with pytest.raises(subprocess.CalledProcessError):
        migrated.psql("SET ROLE bare_probe; SELECT count(*) FROM contexts")
    assert live_schema(url) == live_schema(migrated.url)


def test_postgresql_18_reads_the_same_as_the_snapshot_made_on_16(
    pg18_server: PostgresServer, snapshots: dict[int, Schema]
) -> None:
    name = pg18_server.create_database()
    try:
        assert run_inprocess(["up"], migrator_env(pg18_server.url(name))).code == 0
        assert compare(snapshots[LATEST], live_schema(pg18_server.url(name))) == ()
    finally:
        pg18_server.drop_database(name)


def test_an_interrupted_concurrent_index_build_leaves_an_invalid_index_reported_as_degraded(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql("DROP INDEX messages_embedding_idx")
    # An open transaction that writes to messages: CREATE INDEX CONCURRENTLY has already made
    # its (invalid) index when it waits for that writer, and its lock_timeout ends the build there.
    writer = migrated.server.psql_session(migrated.name, application_name="writer")
    assert writer.stdin is not None
    writer.stdin.write("BEGIN; LOCK TABLE messages IN ROW EXCLUSIVE MODE;\n")
    writer.stdin.flush()
    try:
        wait_until(
            lambda: (
                migrated.psql(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE a.application_name = 'writer' AND l.relation = 'messages'::regclass"
                )
                == "1"
            ),
            what="the writer's lock on messages",
            process=writer,
        )

        async def build() -> None:
            conn = await asyncpg.connect(migrated.url)
            try:
                await conn.execute("SET lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await conn.execute(
                        "CREATE INDEX CONCURRENTLY messages_embedding_idx "
                        "ON messages USING hnsw (embedding vector_cosine_ops)"
                    )
            finally:
                await conn.close()

        asyncio.run(build())
    finally:
        writer.kill()
        writer.wait()
    assert (
        migrated.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'messages_embedding_idx'::regclass")
        == "f"
    )
    [drift] = compare(snapshots[LATEST], live_schema(migrated.url))
    assert (drift.object, drift.kind, drift.class_) == ("messages_embedding_idx", "index", DEGRADED)
    assert "INVALID" in drift.problem


def find_ledger(url: str) -> DrizzleLedger | None:
    async def find() -> DrizzleLedger | None:
        conn = await asyncpg.connect(url)
        try:
            return await find_drizzle_ledger(conn)
        finally:
            await conn.close()

    return asyncio.run(find())


@pytest.mark.parametrize(("release", "migrations"), [("v0.2.0", 2), ("current", 3)])
def test_drizzles_ledger_is_found_with_its_migrations(
    database: Database, release: str, migrations: int
) -> None:
    make_application_database(database, release)
    assert find_ledger(database.url) == DrizzleLedger(migrations)
    assert "drizzle.__drizzle_migrations records" in DrizzleLedger(migrations).describe()


def test_a_database_our_migrator_made_has_no_drizzle_ledger(migrated: Database) -> None:
    assert find_ledger(migrated.url) is None


def test_drizzles_ledger_is_found_by_a_role_that_may_not_read_it(database: Database) -> None:
    make_application_database(database, "current")
    database.server.create_role("ledger_blind", "blind-pw")
    database.psql("GRANT USAGE ON SCHEMA drizzle TO ledger_blind")
    url = database.server.url(database.name, user="ledger_blind", password="blind-pw")
    assert find_ledger(url) == DrizzleLedger(None)
