"""Real processes: eight at once, SIGTERM/SIGINT/SIGHUP mid-statement, SIGKILL mid-statement, the
migrator's backend terminated and the server restarted mid-statement (failover)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from localpg.throwaway import PostgresServer, wheel_bin_dir
from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from tests.conftest import Database
from tests.migrator.conftest import (
    ledger,
    migrator_env,
    run_inprocess,
    start_process,
    table_exists,
)
from tests.polling import wait_until
from tests.schema.conftest import LATEST

Files = Callable[[dict[str, str | bytes]], Path]
# The sleep length comes from a database setting, so the file (and its checksum) stay the same
# while a test turns the sleep off for the rerun.
SLOW = (
    "CREATE TABLE half_done (id int);\n"
    "SELECT pg_sleep(coalesce(nullif(current_setting('kata.test_sleep', true), ''), '0')::float);\n"
    "CREATE TABLE all_done (id int);\n"
)


def sleeping(database: Database) -> Callable[[], bool]:
    return lambda: (
        database.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active' "
            f"AND datname = '{database.name}'"
        )
        == "1"
    )


def test_eight_concurrent_migrators_all_succeed_and_apply_each_file_once(database: Database) -> None:
    procs = [start_process(["up"], migrator_env(database.url, POD_NAME=f"pod-{i}")) for i in range(8)]
    results = [(proc.wait(timeout=120), proc.communicate()) for proc in procs]
    assert [code for code, _ in results] == [0] * 8, [err[-500:] for _, (_, err) in results if err]
    applied = sum(err.count('"event": "migration_applied"') for _, (_, err) in results)
    assert applied == LATEST
    assert ledger(database) == [f"{v}|applied" for v in range(1, LATEST + 1)]
    assert database.psql("SELECT count(DISTINCT applied_by) FROM kata_schema_migrations") == "1"


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_signal_cancels_the_statement_rolls_back_and_releases_the_lock(
    database: Database, write_migrations: Files, signum: signal.Signals, code: int
) -> None:
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '60'")
    env = migrator_env(database.url, MIGRATIONS_DIR=str(write_migrations({"0001_slow.sql": SLOW})))
    proc = start_process(["up"], env)
    try:
        wait_until(sleeping(database), what="the migration to be sleeping")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert '"event": "lock_released"' in err and '"event": "interrupted"' in err
    assert not sleeping(database)()
    assert not table_exists(database, "half_done") and ledger(database) == []
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '0'")
    rerun = run_inprocess(["up", "--lock-timeout", "1"], env)  # the lock is free: no waiting
    assert rerun.code == 0 and "lock_waiting" not in rerun.names()
    assert table_exists(database, "all_done")


def test_sigkill_mid_migration_leaves_nothing_applied_and_a_rerun_succeeds(
    database: Database, write_migrations: Files
) -> None:
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '60'")
    env = migrator_env(database.url, MIGRATIONS_DIR=str(write_migrations({"0001_slow.sql": SLOW})))
    proc = start_process(["up"], env)
    try:
        wait_until(sleeping(database), what="the migration to be sleeping")
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert not table_exists(database, "half_done") and ledger(database) == []
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '0'")
    # The orphaned backend still holds the lock until it notices its client is gone
    # (client_connection_check_interval); the rerun waits for it, then applies the file whole.
    rerun = run_inprocess(["up", "--lock-timeout", "30"], env)
    assert rerun.code == 0, rerun.stderr
    assert table_exists(database, "half_done") and table_exists(database, "all_done")
    assert ledger(database) == ["1|applied"]


def connected(database: Database, pod: str) -> bool:
    query = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kata-migrate@{pod}'"
    return database.psql(query) != "0"


def test_baseline_racing_up_on_an_empty_database_leaves_no_baseline_row_without_its_schema(
    database: Database,
) -> None:
    """Both start while a third session holds the lock, and race for it when it is released
    (waiters poll, so either may win). Whoever wins, no baseline row may lack its schema."""
    holder = database.server.psql_session(database.name, application_name="race-holder")
    assert holder.stdin is not None
    holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_CLASS}, {LOCK_OBJECT});\n")
    holder.stdin.flush()
    wait_until(lambda: database.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "1")
    base = start_process(["baseline", "1"], migrator_env(database.url, POD_NAME="race-baseline"))
    up = start_process(["up"], migrator_env(database.url, POD_NAME="race-up"))
    wait_until(lambda: base.poll() is not None or connected(database, "race-baseline"), what="baseline")
    wait_until(lambda: connected(database, "race-up"), what="up to wait for the lock")
    holder.stdin.close()  # releases the lock
    holder.wait(10)
    _, base_err = base.communicate(timeout=60)
    _, up_err = up.communicate(timeout=120)
    assert up.returncode == 0, up_err
    assert base.returncode == 6, base_err
    assert "baseline 1 refused: this database has no tables" in base_err
    assert ledger(database) == [f"{v}|applied" for v in range(1, LATEST + 1)]
    assert table_exists(database, "contexts")


def test_baseline_on_an_empty_database_records_nothing_and_exits_6(database: Database) -> None:
    outcome = run_inprocess(["baseline", "1"], migrator_env(database.url))
    assert outcome.code == 6, outcome.stderr
    assert outcome.names()[-1] == "baseline_refused"
    assert ledger(database) == []


def terminate_sleeping_migrator(database: Database) -> None:
    """pg_terminate_backend on the migrator's backend while it runs the file's pg_sleep."""
    wait_until(sleeping(database), what="the migration to be sleeping")
    database.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' "
        f"AND state = 'active' AND datname = '{database.name}' AND application_name LIKE 'kata-migrate@%'"
    )


@pytest.mark.parametrize("transactional", [True, False], ids=["transaction", "no-transaction"])
def test_a_backend_terminated_mid_migration_exits_3_and_records_nothing(
    database: Database, write_migrations: Files, transactional: bool
) -> None:
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '60'")
    sql = (
        SLOW
        if transactional
        else "-- migrate: no-transaction\n" + SLOW.replace("TABLE", "TABLE IF NOT EXISTS")
    )
    env = migrator_env(database.url, MIGRATIONS_DIR=str(write_migrations({"0001_slow.sql": sql})))
    proc = start_process(["up"], env)
    try:
        terminate_sleeping_migrator(database)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert '"event": "connection_lost"' in err and "migration_failed" not in err and "Traceback" not in err
    assert "lost the database connection (connection lost) while applying 0001_slow.sql" in err
    assert ledger(database) == [] and not table_exists(database, "all_done")
    # A transactional file was rolled back whole; a no-transaction one keeps what ran before.
    assert table_exists(database, "half_done") is not transactional
    assert ("a re-run is safe" in err) is not transactional
    database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '0'")
    rerun = run_inprocess(["up"], env)
    assert rerun.code == 0, rerun.stderr
    assert ledger(database) == ["1|applied"] and table_exists(database, "all_done")


def test_a_server_restart_mid_migration_exits_3_and_a_rerun_applies_the_file(tmp_path: Path) -> None:
    server = PostgresServer.start(wheel_bin_dir(16))
    try:
        database = Database(server, server.create_database())
        database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '60'")
        directory = tmp_path / "migrations"
        directory.mkdir()
        (directory / "0001_slow.sql").write_text(SLOW)
        env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
        proc = start_process(["up"], env)
        try:
            wait_until(sleeping(database), what="the migration to be sleeping")
            server.halt("fast")  # a failover or restart: the server ends every session
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        server.resume()
        assert proc.returncode == 3, err
        assert '"event": "connection_lost"' in err and "migration_failed" not in err
        assert "while applying 0001_slow.sql" in err
        assert ledger(database) == [] and not table_exists(database, "half_done")
        database.psql(f"ALTER DATABASE \"{database.name}\" SET kata.test_sleep = '0'")
        rerun = run_inprocess(["up"], env)
        assert rerun.code == 0, rerun.stderr
        assert ledger(database) == ["1|applied"]
    finally:
        server.stop()
