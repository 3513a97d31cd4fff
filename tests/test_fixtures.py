"""The real servers the other tests rely on are what they claim to be."""

from __future__ import annotations

from localpg.throwaway import PostgresServer
from tests.conftest import Database


def test_wheel_server_offers_pgvector_but_does_not_install_it(database: Database) -> None:
    available = database.psql("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    installed = database.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
    assert available.startswith("0.8")
    assert installed == "0"


def test_system_postgres_15_has_no_pgvector(pg15_server: PostgresServer) -> None:
    assert pg15_server.psql("SHOW server_version").startswith("15.")
    assert pg15_server.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == "0"


def test_postgres_18_from_the_wheel_runs(pg18_server: PostgresServer) -> None:
    assert pg18_server.psql("SHOW server_version").startswith("18.")
