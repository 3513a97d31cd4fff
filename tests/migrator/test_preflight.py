"""pgvector preflight: exit 4 with what to run, before any DDL."""

from __future__ import annotations

from schema.pgvector import parse_version
from tests.conftest import Database
from tests.migrator.conftest import ledger, migrator_env, run_inprocess, table_exists


def test_server_without_pgvector_exits_4_without_waiting_and_changes_nothing(
    database_without_pgvector: Database,
) -> None:
    outcome = run_inprocess(["up"], migrator_env(database_without_pgvector.url))
    assert outcome.code == 4, outcome.stderr
    assert "pgvector is not available" in outcome.final_message
    assert (
        "postgresql-15-pgvector" in outcome.final_message
        and "CREATE EXTENSION IF NOT EXISTS vector;" in outcome.final_message
    )
    # Quickly means nothing waited: no connection retry, no lock wait, the verdict right after
    # the lock, and nothing applied. Counts and order, which hold however slow the machine is.
    names = outcome.names()
    assert names[-1] == "pgvector_unavailable" and names.count("lock_acquired") == 1, names
    assert not {"connect_retry", "lock_waiting", "migration_applied"} & set(names), names
    assert ledger(database_without_pgvector) == [] and not table_exists(database_without_pgvector, "contexts")


def test_role_that_may_not_create_the_extension_gets_the_statement_to_run(database: Database) -> None:
    database.server.create_role("app_no_ext", "app-pw-1")
    database.psql("GRANT CREATE ON SCHEMA public TO app_no_ext")
    url = database.server.url(database.name, user="app_no_ext", password="app-pw-1")
    outcome = run_inprocess(["up"], migrator_env(url))
    assert outcome.code == 4, outcome.stderr
    assert "`CREATE EXTENSION IF NOT EXISTS vector;` in database " + database.name in outcome.final_message
    assert "role app_no_ext may not create it" in outcome.final_message
    assert ledger(database) == [] and not table_exists(database, "contexts")
    database.psql("CREATE EXTENSION vector")  # what the message says an owner should do
    assert run_inprocess(["up"], migrator_env(url)).code == 0


def test_too_old_installed_pgvector_exits_4(database: Database) -> None:
    database.psql("CREATE EXTENSION vector")
    database.psql("UPDATE pg_extension SET extversion = '0.4.4' WHERE extname = 'vector'")
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 4
    assert "pgvector 0.4.4 is installed" in outcome.final_message and "ALTER EXTENSION vector UPDATE;" in (
        outcome.final_message
    )
    assert ledger(database) == [] and not table_exists(database, "contexts")


def test_installed_pgvector_is_used_without_creating_it(database: Database) -> None:
    database.psql("CREATE EXTENSION vector")
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0
    assert [e["created"] for e in outcome.events() if e["event"] == "pgvector_ready"] == [False]


def test_versions_compare_numerically() -> None:
    assert parse_version("0.10.0") > parse_version("0.5.0") > parse_version("0.4.4")
    assert parse_version("0.5.0-dev") >= (0, 5, 0)
