"""Real processes: a stop signal ends `up` even where cancelling the statement cannot (issue 19,
item 1), and the server rolls back what was open when the migrator closes its connection hard.

Two waits that a cancel request does not end:

- `COPY ... FROM STDIN` sent in a query: the server waits for the client's data and, while it
  reads from the client outside a command read, acts neither on a cancel request nor on
  statement_timeout; asyncpg discards the CopyInResponse of a simple query and waits for a
  ReadyForQuery that never comes (and every later query on the connection waits for the cancel
  to be acknowledged). The file rules refuse such a file before anything runs (schema/rules.py),
  which would hide the wait: this test starts the migrator through a launcher that replaces the
  rules with nothing in that process, and only there.
- A server (or network path) that stops answering mid-statement: the relay goes silent, so the
  cancel request and every reply are swallowed.

The bound each exit is held to is the Job's terminationGracePeriodSeconds: after it, kubelet
sends SIGKILL and the final log line is lost."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from localpg.relay import Relay
from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from tests.conftest import Database
from tests.migrator.conftest import REPO, Outcome, ledger, migrator_env, process_env, table_exists
from tests.polling import wait_until

Files = Callable[[dict[str, str | bytes]], Path]
JOB = REPO / "deploy" / "k8s" / "job-migrate.yaml"
BYPASS_RULES = (
    "import migrator.cli, migrator.runner; "
    "migrator.runner.check_migrations = lambda files: None; "
    "migrator.cli.main()"
)
COPY_IN = "CREATE TABLE half_done (id int);\nCOPY half_done FROM stdin;\nCREATE TABLE all_done (id int);\n"
SLEEP = "CREATE TABLE half_done (id int);\nSELECT pg_sleep(300);\nCREATE TABLE all_done (id int);\n"


def termination_grace() -> float:
    """The Job's terminationGracePeriodSeconds: how long kubelet waits after SIGTERM."""
    job = yaml.safe_load(JOB.read_text())
    return float(job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def start(code: list[str], args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """The migrator as a real process, its stderr in `log` so a test can read it while it runs."""
    with log.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, *code, *args],
            env=process_env(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            cwd=REPO,
        )


def stop(proc: subprocess.Popen[str], log: Path, *signals: signal.Signals) -> Outcome:
    """Send the first signal; once the migrator logged it, the others (signals while stopping);
    then wait for the exit no longer than kubelet would."""
    started = time.monotonic()
    proc.send_signal(signals[0])
    if signals[1:]:
        wait_until(
            lambda: '"event": "signal"' in log.read_text(), what="the signal to be logged", process=proc
        )
        for signum in signals[1:]:
            proc.send_signal(signum)
    try:
        proc.wait(timeout=termination_grace())
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {termination_grace():g} s after {signals[0].name}") from None
    return Outcome(proc.returncode, "", log.read_text(), time.monotonic() - started)


def activity(database: Database, condition: str) -> Callable[[], bool]:
    query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database.name}' AND {condition}"
    return lambda: database.psql(query) == "1"


def lock_free(database: Database) -> bool:
    return (
        database.psql(
            f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = {LOCK_CLASS} "
            f"AND objid = {LOCK_OBJECT}"
        )
        == "0"
    )


def assert_stopped_hard(outcome: Outcome, code: int, database: Database) -> None:
    """Exit with the signal's code after one final `interrupted` line that says the connections
    were closed without waiting and what may be left; then the server rolls the file back."""
    assert outcome.code == code, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.names().count("interrupted") == 1 and outcome.names()[-1] == "interrupted"
    message = outcome.final_message
    assert "closed" in message and "rolls back" in message, message
    wait_until(lambda: lock_free(database), what="the server to release the orphaned lock")
    assert not table_exists(database, "half_done") and ledger(database) == []


def test_sigterm_ends_up_waiting_in_copy_from_stdin_and_the_server_rolls_the_file_back(
    database: Database, write_migrations: Files, tmp_path: Path
) -> None:
    env = migrator_env(database.url, MIGRATIONS_DIR=str(write_migrations({"0001_copy.sql": COPY_IN})))
    log = tmp_path / "stderr.log"
    proc = start(["-c", BYPASS_RULES], ["up", "--statement-timeout", "1"], env, log)
    try:
        # Waiting for the client's data, past the 1 s statement_timeout: the server will not end it.
        wait_until(
            activity(database, "query LIKE 'COPY half_done%' AND wait_event = 'ClientRead'"),
            what="the COPY to wait for data",
            process=proc,
        )
        outcome = stop(proc, log, signal.SIGTERM)
    finally:
        proc.kill()
    assert_stopped_hard(outcome, 143, database)


def test_a_signal_ends_up_when_the_server_stops_answering_and_more_signals_leave_no_traceback(
    database: Database, write_migrations: Files, relay: Relay, tmp_path: Path
) -> None:
    url = re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{relay.port}/", database.url)
    env = migrator_env(url, MIGRATIONS_DIR=str(write_migrations({"0001_sleep.sql": SLEEP})))
    log = tmp_path / "stderr.log"
    proc = start(["-m", "migrator"], ["up"], env, log)
    try:
        wait_until(
            activity(database, "query LIKE 'SELECT pg_sleep%' AND state = 'active'"),
            what="the migration to be sleeping",
            process=proc,
        )
        relay.set_mode("silent")
        outcome = stop(proc, log, signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    finally:
        proc.kill()
    assert_stopped_hard(outcome, 130, database)
