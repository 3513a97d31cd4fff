"""A check added to the list reaches every surface by itself: route, exclusion, verbose line, JSON,
metric labels and its own metrics; nothing else in the probe names it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Gauge

from probe.app import MONITOR, REGISTRY, create_app
from probe.check import Check, CheckFailed, CheckResult, Recorder, Snapshot, Verdict
from probe.checks import default_checks
from schema.catalog import read_catalog
from tests.conftest import Database
from tests.probe.conftest import REPO, make_settings, ready_database, until

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@dataclass(frozen=True)
class ServerVersion:
    number: int


class ServerVersionCheck(Check[ServerVersion]):
    """A real check of the kind a later change adds: passes from `minimum` on, sets its own gauge."""

    name = "server_version"

    def __init__(self, minimum: int) -> None:
        self._minimum = minimum

    async def run(self, conn: asyncpg.Connection) -> ServerVersion:
        found = ServerVersion(int(await conn.fetchval("SHOW server_version_num")))
        if found.number < self._minimum:
            raise CheckFailed(f"server {found.number} is older than {self._minimum}", found)
        return found

    def body(
        self, verdict: Verdict, found: ServerVersion | None, snapshot: Snapshot | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok" if verdict.ok else "failed"}
        if found is not None:
            body["versionNum"] = found.number
        return body

    def metrics(self, registry: CollectorRegistry) -> Recorder:
        gauge = Gauge("kata_db_test_server_version_num", "server_version_num", registry=registry)

        def record(result: CheckResult[ServerVersion]) -> None:
            if result.found is not None:
                gauge.set(result.found.number)

        return record


def health_schema() -> jsonschema.Draft4Validator:
    """probe/openapi.yaml's Health body as a JSON Schema validator (OpenAPI 3.0's dialect is
    draft 4's: it does not read `nullable` or `format`, and after a round `checkedAt` is a string)."""
    document = yaml.safe_load((REPO / "probe" / "openapi.yaml").read_text())
    resource = referencing.Resource.from_contents(document, referencing.jsonschema.DRAFT4)
    registry = referencing.Registry().with_resource("openapi.yaml", resource)
    return jsonschema.Draft4Validator({"$ref": "openapi.yaml#/components/schemas/Health"}, registry=registry)


async def text(client: Client, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with client.get(path, headers=headers) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("minimum", [1, 10**7])
async def test_a_check_added_to_the_list_reaches_routes_json_and_metrics(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path, minimum: int
) -> None:
    ready_database(database, migrations_dir)
    checks = (*default_checks(read_catalog(migrations_dir)), ServerVersionCheck(minimum))
    app = create_app(make_settings(database.url, migrations_dir), CollectorRegistry(), checks=checks)
    client = await aiohttp_client(app)
    monitor = client.app[MONITOR]

    async def one_round() -> bool:
        return monitor.latest is not None

    await until(one_round, 10, "the first check round")
    passes = minimum == 1
    status, lines = await text(client, "/readyz?verbose")
    assert status == (200 if passes else 503)
    line = "[+]server_version ok" if passes else "[-]server_version failed: server "
    assert lines.splitlines()[-2].startswith(line), lines  # the last check, before the outcome
    assert (await text(client, "/readyz/server_version"))[0] == status
    assert (await text(client, "/readyz?exclude=server_version"))[0] == 200
    async with client.get("/healthz") as response:
        body = await response.json()
    # The published contract takes the new check's entry as it is: no edit to probe/openapi.yaml.
    health_schema().validate(body)
    entry = body["checks"]["server_version"]
    assert entry["status"] == ("ok" if passes else "failed")
    assert entry["versionNum"] >= 160000
    registry = client.app[REGISTRY]
    result = "ok" if passes else "failed"
    assert registry.get_sample_value("kata_db_checks_total", {"check": "server_version", "result": result})
    assert registry.get_sample_value("kata_db_test_server_version_num") == entry["versionNum"]


async def test_the_checks_table_in_docs_lists_every_check_of_the_list_in_order(migrations_dir: Path) -> None:
    text = (REPO / "docs" / "probe.md").read_text()
    table = text.split("## Checks (one round)", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert documented == [check.name for check in default_checks(read_catalog(migrations_dir))]
