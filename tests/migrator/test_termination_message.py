"""The final event in the termination message kubelet shows for the Job's pod: real `python -m
migrator` processes writing into a file that stands in for /dev/termination-log (kubelet creates
that file; the migrator only ever writes into an existing one)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.drift_errors import SchemaDrift
from migrator.errors import EXIT_CODES
from migrator.termination import MAX_BYTES, TERMINATION_LOG_ENV, FinalEvent
from tests.conftest import Database
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_process, start_process
from tests.migrator.test_secrets_more import SENTINEL, sentinel_url
from tests.polling import wait_until

Files = Callable[[dict[str, str | bytes]], Path]
BAD_SECOND_FILE = {
    "0001_a.sql": "CREATE TABLE a (id int);\n",
    "0002_b.sql": "CREATE TABLE b (id int);\nCREATE TABLE b_twice (id int REFERENCES nowhere (id));\n",
}


@pytest.fixture
def termination_log(tmp_path: Path) -> Path:
    """An empty file, as kubelet provides it before the container starts."""
    path = tmp_path / "termination-log"
    path.touch()
    return path


def message(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    assert 0 < len(data) <= MAX_BYTES, len(data)
    document: dict[str, object] = json.loads(data)
    return document


def test_a_failed_migration_leaves_its_code_meaning_and_file_in_the_termination_message(
    database: Database, write_migrations: Files, termination_log: Path
) -> None:
    env = migrator_env(
        sentinel_url(database),
        MIGRATIONS_DIR=str(write_migrations(BAD_SECOND_FILE)),
        **{TERMINATION_LOG_ENV: str(termination_log)},
    )
    outcome = run_process(["up"], env)
    assert outcome.code == 5, outcome.stderr
    written = message(termination_log)
    assert written["exit_code"] == 5
    assert written["meaning"] == EXIT_CODES["5"]
    assert written["event"] == "migration_failed"
    assert written["file"] == "0002_b.sql"
    assert written["line"] == 2
    # The same words as the log's final event, which names the file and says what to do.
    assert written["msg"] == outcome.final_message
    assert "0002_b.sql" in str(written["msg"])
    assert SENTINEL not in termination_log.read_text()


def test_an_unreachable_database_names_exit_3_and_never_the_password(termination_log: Path) -> None:
    url = f"postgresql://kata_owner:{SENTINEL}@127.0.0.1:9/kata"  # the discard port: refused at once
    env = migrator_env(url, MIGRATOR_CONNECT_TIMEOUT="1", **{TERMINATION_LOG_ENV: str(termination_log)})
    outcome = run_process(["up"], env)
    assert outcome.code == 3, outcome.stderr
    written = message(termination_log)
    assert (written["exit_code"], written["event"]) == (3, "database_unreachable")
    assert written["meaning"] == EXIT_CODES["3"]
    assert SENTINEL not in termination_log.read_text()


def test_success_writes_exit_0_what_was_applied_and_the_version(
    database: Database, termination_log: Path
) -> None:
    env = migrator_env(database.url, **{TERMINATION_LOG_ENV: str(termination_log)})
    outcome = run_process(["up"], env)
    assert outcome.code == 0, outcome.stderr
    files = sorted(p.name for p in MIGRATIONS.glob("[0-9]*.sql"))
    latest = int(files[-1].split("_", 1)[0])
    written = message(termination_log)
    assert written["exit_code"] == 0 and written["meaning"] == EXIT_CODES["0"]
    assert (written["event"], written["command"]) == ("done", "up")
    assert (written["applied"], written["version"]) == (len(files), latest)
    assert all(name in str(written["msg"]) for name in files), written["msg"]

    again = run_process(["up"], env)  # the file is replaced, not appended to
    assert again.code == 0, again.stderr
    written = message(termination_log)
    assert (written["applied"], written["version"]) == (0, latest)
    assert "nothing to apply" in str(written["msg"])


def test_sigterm_while_waiting_for_the_lock_leaves_143_in_the_termination_message(
    database: Database, lock_holder: None, termination_log: Path
) -> None:
    """What activeDeadlineSeconds does to a run: SIGTERM, then the message says it was interrupted."""
    proc = start_process(["up"], migrator_env(database.url, **{TERMINATION_LOG_ENV: str(termination_log)}))
    try:
        # Connected means inside the verb, where the signal handlers are: it polls for the lock.
        wait_until(
            lambda: (
                database.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kata-migrate@test-pod'"
                )
                == "1"
            ),
            what="the migrator to connect and wait for the lock",
            process=proc,
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    written = message(termination_log)
    assert (written["exit_code"], written["event"]) == (143, "interrupted")
    assert written["meaning"] == EXIT_CODES["129 / 130 / 143"]


@pytest.mark.parametrize("where", ["absent file", "absent directory", "a directory"])
def test_an_absent_or_unwritable_termination_log_changes_nothing(
    database: Database, write_migrations: Files, tmp_path: Path, where: str
) -> None:
    path = {
        "absent file": tmp_path / "termination-log",
        "absent directory": tmp_path / "missing" / "termination-log",
        "a directory": tmp_path,
    }[where]
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(write_migrations(BAD_SECOND_FILE)),
        **{TERMINATION_LOG_ENV: str(path)},
    )
    outcome = run_process(["up"], env)
    assert outcome.code == 5, outcome.stderr
    assert outcome.names()[-1] == "migration_failed"
    assert "Traceback" not in outcome.stderr
    assert not (tmp_path / "termination-log").exists()  # never created: kubelet's file or none
    assert not (tmp_path / "missing").exists()


def test_a_long_message_is_cut_to_what_kubelet_keeps_and_stays_json() -> None:
    lines = [f"table t{i}: missing (0001_initial_schema.sql creates it; ünïcode)" for i in range(400)]
    event = FinalEvent.of_error(SchemaDrift(1, lines, command="up"))
    data = event.render()
    assert len(event.message.encode()) > MAX_BYTES
    assert len(data) <= MAX_BYTES
    document = json.loads(data)
    assert document["exit_code"] == 6 and document["event"] == "schema_drift"
    assert str(document["msg"]).endswith(" …")
    assert str(document["msg"])[:-2] == event.message[: len(document["msg"]) - 2]


def test_control_bidi_and_unpaired_characters_are_escaped_and_never_break_the_message() -> None:
    # File names come from the ledger: a C1 control, a bidi override, a line separator and an
    # unpaired surrogate must neither reach `kubectl describe` raw nor fail the encoding.
    name = "0009_\x9b\u202eevil\u2028\ud800.sql"
    data = FinalEvent(6, "drift_detected", f"applied but missing here: {name}", {"file": name}).render()
    assert data.isascii()
    assert json.loads(data)["file"] == name
