"""schemathesis drives the live probe process from probe/openapi.yaml and validates every answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from localpg.throwaway import PostgresServer, free_port
from tests.conftest import Database
from tests.polling import wait_until
from tests.probe.conftest import MIGRATIONS, REPO, probe_env, ready_database

SCHEMA_PATH = REPO / "probe" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SCHEMA_PATH))


@pytest.fixture(scope="module")
def live_probe(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One probe process for the whole module, on a ready database; yields its base URL."""
    directory = tmp_path_factory.mktemp("migrations")
    for name, sql in MIGRATIONS.items():
        (directory / name).write_text(sql)
    database = Database(pg_server, pg_server.create_database())
    ready_database(database, directory)
    port = free_port()
    env = {**os.environ, **probe_env(database.url, directory), "PROBE_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "probe"], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        pg_server.drop_database(database.name)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    wait_until(ready, timeout, "the probe to become ready", process=process)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_openapi_document(case: schemathesis.Case[Any], live_probe: str) -> None:
    # Every string is a valid `exclude` or `verbose` value (unknown names only add a warning line),
    # and a query string cannot tell an "object" from an array: negative data cannot be rejected.
    case.call_and_validate(base_url=live_probe, excluded_checks=[negative_data_rejection])


def test_openapi_document_names_every_route() -> None:
    paths = set(schema.raw_schema["paths"])
    assert paths == {"/livez", "/healthz", "/readyz", "/readyz/{name}", "/metrics"}
    assert Path(SCHEMA_PATH).is_file()
