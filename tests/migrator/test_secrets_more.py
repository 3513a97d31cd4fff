"""The password stays out of stdout and stderr on the exit paths the first sentinel test misses:
4 (no pgvector), 6 (drift) and 7 (lock held elsewhere), in both log formats."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.migrator.conftest import Outcome, migrator_env, run_inprocess, run_process

SENTINEL = "S3ntinel-pw-x9"
Files = Callable[[dict[str, str | bytes]], Path]
FORMATS = pytest.mark.parametrize("log_format", ["json", "text"])


def sentinel_url(database: Database) -> str:
    """A fresh superuser role whose password is the sentinel (roles are per cluster: unique name)."""
    role = f"sentinel_{uuid.uuid4().hex[:8]}"
    database.server.create_role(role, SENTINEL, "SUPERUSER")
    return database.server.url(database.name, user=role, password=SENTINEL)


def assert_no_secret(outcome: Outcome) -> None:
    output = outcome.stdout + outcome.stderr
    assert SENTINEL not in output
    assert SENTINEL.lower() not in output.lower()
    assert "Traceback" not in outcome.stderr


@FORMATS
def test_exit_4_without_pgvector_never_prints_the_password(
    database_without_pgvector: Database, log_format: str
) -> None:
    url = sentinel_url(database_without_pgvector)
    outcome = run_process(["up"], migrator_env(url, MIGRATOR_LOG_FORMAT=log_format))
    assert outcome.code == 4, outcome.stderr
    assert "pgvector" in outcome.stderr
    assert_no_secret(outcome)


@FORMATS
def test_exit_6_on_drift_never_prints_the_password(
    database: Database, write_migrations: Files, log_format: str
) -> None:
    url = sentinel_url(database)
    directory = write_migrations({"0001_a.sql": "CREATE TABLE a (id int);"})
    env = migrator_env(url, MIGRATIONS_DIR=str(directory), MIGRATOR_LOG_FORMAT=log_format)
    assert run_process(["up"], env).code == 0
    (directory / "0001_a.sql").write_text("CREATE TABLE a (id bigint);")
    for command in (["up"], ["status", "--exit-code"]):
        outcome = run_process(command, env)
        assert outcome.code == 6, (command, outcome.stderr)
        assert "0001_a.sql" in outcome.stderr
        assert_no_secret(outcome)


@FORMATS
def test_exit_7_on_a_held_lock_never_prints_the_password(
    database: Database, lock_holder: None, log_format: str
) -> None:
    url = sentinel_url(database)
    outcome = run_process(["up", "--lock-timeout", "0.5"], migrator_env(url, MIGRATOR_LOG_FORMAT=log_format))
    assert outcome.code == 7, outcome.stderr
    assert "sentinel-holder" in outcome.stderr  # the message names the holder, not us
    assert_no_secret(outcome)


@pytest.mark.parametrize("password", ["app", "a", "e", "error", "migration", "1"])
def test_a_short_or_common_password_leaves_every_log_line_intact(database: Database, password: str) -> None:
    """Scrubbing by substring turned `application_name` into `***lication_name` for the password
    `app`: the lines must be exactly what they would be for any other password."""
    role = f"short_{uuid.uuid4().hex[:8]}"
    database.server.create_role(role, password, "SUPERUSER")
    url = database.server.url(database.name, user=role, password=password)
    outcome = run_inprocess(["up"], migrator_env(url))
    assert outcome.code == 0, outcome.stderr
    events = outcome.events()  # every line is valid JSON
    assert len(events) == len(outcome.stderr.splitlines())
    assert "***" not in outcome.stderr
    assert events[0]["event"] == "start" and "application_name" in events[0]
    assert "migration_applied" in outcome.names() and outcome.names()[-1] == "done"
    assert ":***@" not in outcome.stderr  # no line needs the URL


@pytest.mark.parametrize("password", ["app", "a", "e"])
def test_a_short_password_leaves_failure_lines_intact(password: str) -> None:
    url = f"postgresql://app:{password}@127.0.0.1:1/app?sslmode=disable"
    outcome = run_inprocess(["status"], migrator_env(url, MIGRATOR_CONNECT_TIMEOUT="0"))
    assert outcome.code == 3, outcome.stderr
    assert outcome.names() == ["start", "database_unreachable"]
    assert "postgresql://app:***@127.0.0.1:1/app?sslmode=disable" in outcome.final_message
    assert "check that the server is up and reachable" in outcome.final_message
    assert "database_unreachable" in outcome.stderr and "application_name" in outcome.stderr
