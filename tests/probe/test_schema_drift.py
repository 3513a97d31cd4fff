"""The probe's schema check against a real catalog: hand-made drift reaches readiness (breaking
only), `?verbose`, `checks.schema.drift` and `kata_db_schema_drift_objects`; an INVALID index left
by a cancelled CREATE INDEX CONCURRENTLY is degraded; an old image ignores what newer migrations
added."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from probe.app import MONITOR, REGISTRY, create_app
from tests.conftest import Database
from tests.fixtures.expected_schema import HAND_MADE_DRIFT, UNDO_0003, migrations_up_to
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_process
from tests.polling import wait_until
from tests.probe.conftest import make_settings, until
from tests.schema.conftest import LATEST

pytestmark = pytest.mark.asyncio
Client = TestClient[Any, Any]
ClientFactory = Callable[[Any], Awaitable[Client]]
EVERY_ROUND = {"PROBE_SCHEMA_INTERVAL": "0"}
BUILD = (
    "CREATE INDEX CONCURRENTLY messages_embedding_idx ON messages USING hnsw (embedding vector_cosine_ops)"
)
WRITER_LOCKED = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE a.application_name = 'drift-writer' AND l.mode = 'RowExclusiveLock'"
)
BUILD = (
    "CREATE INDEX CONCURRENTLY messages_embedding_idx ON messages USING hnsw (embedding vector_cosine_ops)"
)
WRITER_LOCKED = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE a.application_name = 'drift-writer' AND l.mode = 'RowExclusiveLock'"
)


def migrate(database: Database) -> None:
    # A process of its own: the migrator runs its own event loop, and this test is inside one.
    outcome = run_process(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr


async def probe_on(
    aiohttp_client: ClientFactory, database: Database, migrations: Path = MIGRATIONS
) -> Client:
    app = create_app(make_settings(database.url, migrations, **EVERY_ROUND), CollectorRegistry())
    return await aiohttp_client(app)


def drift_gauge(client: Client, class_: str) -> float | None:
    return client.app[REGISTRY].get_sample_value("kata_db_schema_drift_objects", {"class": class_})


async def exposed_drift(client: Client) -> dict[str, float]:
    """`kata_db_schema_drift_objects` by class, read from /metrics with the exposition parser."""
    async with client.get("/metrics") as response:
        text = await response.text()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "kata_db_schema_drift_objects"]
    return {sample.labels["class"]: sample.value for sample in family.samples}


async def schema_entry(client: Client) -> dict[str, Any]:
    async with client.get("/healthz") as response:
        entry: dict[str, Any] = (await response.json())["checks"]["schema"]
    return entry


async def wait_for_a_round(client: Client) -> None:
    async def finished() -> bool:
        return client.app[MONITOR].latest is not None

    await until(finished, 15, "the first check round")


async def wait_for_drift(client: Client, class_: str, count: int) -> None:
    async def seen() -> bool:
        return drift_gauge(client, class_) == count

    await until(seen, 15, f"kata_db_schema_drift_objects{{class={class_!r}}} to reach {count}")


@pytest.mark.parametrize(("sql", "name", "class_"), HAND_MADE_DRIFT)
async def test_hand_made_drift_reaches_readiness_json_and_metrics(
    aiohttp_client: ClientFactory, database: Database, sql: str, name: str, class_: str
) -> None:
    migrate(database)
    client = await probe_on(aiohttp_client, database)
    await wait_for_a_round(client)
    assert await exposed_drift(client) == {"breaking": 0, "degraded": 0}
    response = await client.get("/readyz?verbose")
    assert response.status == 200, await response.text()
    database.psql(sql)
    await wait_for_drift(client, class_, 1)
    other = "degraded" if class_ == "breaking" else "breaking"
    assert await exposed_drift(client) == {class_: 1, other: 0}
    entry = await schema_entry(client)
    assert [(d["object"], d["class"]) for d in entry["drift"]] == [(name, class_)]
    response = await client.get("/readyz?verbose")
    verbose = await response.text()
    if class_ == "breaking":
        assert response.status == 503
        assert f"[-]schema failed: breaking drift: column {name} " in verbose
        assert entry["status"] == "drift"
    else:
        assert response.status == 200  # a missing index or CHECK keeps the pod in its Service
        assert "[+]schema ok (degraded drift: " in verbose and f" {name} " in verbose
        assert entry["status"] == "degraded"


async def test_an_index_left_invalid_by_a_cancelled_concurrent_build_is_degraded(
    aiohttp_client: ClientFactory, database: Database
) -> None:
    migrate(database)
    database.psql("DROP INDEX messages_embedding_idx")
    # A writer's open transaction makes CREATE INDEX CONCURRENTLY wait after it has entered the
    # index in the catalog; cancelling it there leaves the index INVALID.
    writer = database.server.psql_session(database.name, application_name="drift-writer")
    builder = database.server.psql_session(database.name, application_name="drift-builder")
    assert writer.stdin is not None and builder.stdin is not None
    try:
        writer.stdin.write("BEGIN; LOCK TABLE messages IN ROW EXCLUSIVE MODE;\n")
        writer.stdin.flush()
        wait_until(lambda: database.psql(WRITER_LOCKED) == "1", what="the writer to hold its lock")
        builder.stdin.write(f"{BUILD};\n")
        builder.stdin.flush()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'drift-builder' AND wait_event_type = 'Lock'"
        )
        wait_until(lambda: database.psql(waiting) == "1", what="the concurrent build to wait for the writer")
        database.psql(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'drift-builder'"
        )
    finally:
        for session in (builder, writer):
            assert session.stdin is not None
            session.stdin.close()
            session.wait(10)
    invalid = "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'messages_embedding_idx'::regclass"
    assert database.psql(invalid) == "t"
    client = await probe_on(aiohttp_client, database)
    await wait_for_a_round(client)
    assert drift_gauge(client, "degraded") == 1
    [drift] = (await schema_entry(client))["drift"]
    assert (drift["object"], drift["class"]) == ("messages_embedding_idx", "degraded")
    assert drift["problem"].startswith("is INVALID")
    assert (await client.get("/readyz")).status == 200


async def test_an_old_image_ignores_newer_objects_and_reports_what_it_needs(
    aiohttp_client: ClientFactory, database: Database, tmp_path: Path
) -> None:
    migrate(database)  # the ledger is ahead of the old image: version LATEST against its 4
    client = await probe_on(aiohttp_client, database, migrations_up_to(tmp_path, 4))
    await wait_for_a_round(client)
    entry = await schema_entry(client)
    assert (entry["version"], entry["expected"], entry["drift"]) == (LATEST, 4, [])
    assert (await client.get("/readyz")).status == 200
    database.psql("DROP INDEX messages_embedding_idx")  # 0005's, not the old image's concern
    database.psql("ALTER TABLE messages DROP COLUMN tool_name")  # the old code needs it
    await wait_for_drift(client, "breaking", 1)
    assert [d["object"] for d in (await schema_entry(client))["drift"]] == ["messages.tool_name"]
    assert drift_gauge(client, "degraded") == 0


async def test_an_out_of_order_pending_migration_is_pending_not_breaking_drift(
    aiohttp_client: ClientFactory, database: Database
) -> None:
    migrate(database)
    for sql in UNDO_0003:  # 1, 2, 4.. applied: snapshot LATEST holds 0003's constraints
        database.psql(sql)
    client = await probe_on(aiohttp_client, database)
    await wait_for_a_round(client)
    entry = await schema_entry(client)
    assert (entry["status"], entry["version"], entry["pending"], entry["drift"]) == ("pending", LATEST, 1, [])
    assert drift_gauge(client, "breaking") == 0


async def test_a_ledger_of_the_wrong_shape_fails_the_schema_check_naming_the_column(
    aiohttp_client: ClientFactory, database: Database
) -> None:
    migrate(database)
    database.psql("ALTER TABLE kata_schema_migrations DROP COLUMN kind")
    client = await probe_on(aiohttp_client, database)
    await wait_for_a_round(client)
    response = await client.get("/readyz?verbose")
    assert response.status == 503
    assert "[-]schema failed: ledger of the wrong shape: column kind is missing" in await response.text()
    # Breaking drift of the ledger itself: the metrics and the breaking-drift alert say so.
    entry = await schema_entry(client)
    assert entry["status"] == "drift"
    assert [(d["object"], d["class"]) for d in entry["drift"]] == [("kata_schema_migrations", "breaking")]
    assert drift_gauge(client, "breaking") == 1
