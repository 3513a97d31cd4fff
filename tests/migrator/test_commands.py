"""The commands against a real PostgreSQL 16 (and 18) with pgvector, run in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from localpg.throwaway import PostgresServer, free_port, wheel_bin_dir
from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from schema.catalog import checksum
from tests.conftest import Database
from tests.migrator.conftest import (
    MIGRATIONS,
    ledger,
    migrator_env,
    process_env,
    run_inprocess,
    run_process,
    start_process,
    table_exists,
)
from tests.polling import wait_until
from tests.schema.conftest import LATEST

Files = Callable[[dict[str, str | bytes]], Path]
ALL = [f"{v}|applied" for v in range(1, LATEST + 1)]


def test_up_builds_the_schema_and_a_second_up_does_nothing(database: Database) -> None:
    first = run_inprocess(["up"], migrator_env(database.url))
    assert first.code == 0, first.stderr
    assert first.names().count("migration_applied") == LATEST
    assert all(
        isinstance(e["duration_ms"], float) for e in first.events() if e["event"] == "migration_applied"
    )
    assert ledger(database) == ALL
    assert database.psql("SELECT DISTINCT applied_by FROM kata_schema_migrations") == "kata-migrate@test-pod"
    second = run_inprocess(["up"], migrator_env(database.url))
    assert second.code == 0
    assert "migration_applied" not in second.names()
    assert "nothing_to_do" in second.names()
    assert first.stdout == second.stdout == ""


def test_ledger_keeps_applied_by_verbatim_whatever_a_migration_does_to_string_syntax(
    database: Database, write_migrations: Files
) -> None:
    # The ledger row is written as SQL literals; a quote or backslash in the pod name, and a
    # database whose default turns standard_conforming_strings off, must not change what is
    # recorded. (A migration may no longer change the setting: schema/rules.py refuses it.)
    pod = "pod-'quoted'\\back\\'"
    database.psql(f'ALTER DATABASE "{database.name}" SET standard_conforming_strings = off')
    directory = write_migrations(
        {
            "0001_first.sql": "CREATE TABLE first_t (id int);\n",
            "0002_second.sql": "CREATE TABLE second_t (id int);\n",
            "0003_outside.sql": "-- migrate: no-transaction\nCREATE TABLE third_t (id int);\n",
        }
    )
    env = migrator_env(database.url, POD_NAME=pod, MIGRATIONS_DIR=str(directory))
    database.psql("CREATE TABLE first_t (id int)")  # 0001's schema, made by another tool
    assert run_inprocess(["baseline", "1"], env).code == 0
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert ledger(database) == ["1|baseline", "2|applied", "3|applied"]
    recorded = database.psql("SELECT DISTINCT applied_by FROM kata_schema_migrations")
    assert recorded == f"kata-migrate@{pod}"


def test_up_works_on_postgresql_18(pg18_server: PostgresServer) -> None:
    name = pg18_server.create_database()
    try:
        outcome = run_inprocess(["up"], migrator_env(pg18_server.url(name)))
        assert outcome.code == 0, outcome.stderr
        assert pg18_server.psql("SELECT count(*) FROM kata_schema_migrations", name) == str(LATEST)
    finally:
        pg18_server.drop_database(name)


def test_status_lists_pending_then_applied(database: Database) -> None:
    env = migrator_env(database.url)
    text = run_inprocess(["status"], env)
    assert text.code == 0
    assert f"{LATEST} pending" in text.stdout and "0006_contexts_parent_id_idx.sql" in text.stdout
    assert run_inprocess(["status", "--exit-code"], env).code == 8
    run_inprocess(["up"], env)
    document = json.loads(run_inprocess(["status", "--json"], env).stdout)
    assert document["version"] == LATEST and document["pending"] == []
    assert [m["state"] for m in document["migrations"]] == ["applied"] * LATEST
    assert document["migrations"][0]["applied_by"] == "kata-migrate@test-pod"
    assert run_inprocess(["status", "--exit-code"], env).code == 0


def test_plan_prints_pending_sql_and_touches_nothing(database: Database) -> None:
    outcome = run_inprocess(["plan"], migrator_env(database.url))
    assert outcome.code == 0
    assert outcome.stdout.count("-- 000") == LATEST
    assert "CREATE TABLE contexts" in outcome.stdout and "outside a transaction" in outcome.stdout
    assert ledger(database) == [] and not table_exists(database, "contexts")
    assert database.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == "0"


def test_verify_says_pending_then_ok(database: Database) -> None:
    env = migrator_env(database.url)
    pending = run_inprocess(["verify"], env)
    assert pending.code == 8 and f"{LATEST} migration(s) pending" in pending.final_message
    run_inprocess(["up"], env)
    assert run_inprocess(["verify"], env).code == 0


def test_wait_times_out_with_8_while_pending(database: Database) -> None:
    outcome = run_inprocess(["wait", "--timeout", "0.3"], migrator_env(database.url))
    assert outcome.code == 8
    assert "after waiting" in outcome.final_message


def test_wait_returns_once_another_process_has_migrated(database: Database) -> None:
    waiter = start_process(["wait", "--timeout", "60"], migrator_env(database.url))
    try:
        wait_until(
            lambda: (
                database.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'kata-migrate%'"
                )
                == "1"
            ),
            what="the waiter to connect",
        )
        assert run_inprocess(["up"], migrator_env(database.url)).code == 0
        _out, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert '"event": "ready"' in err


def test_connection_killed_mid_command_exits_3(database: Database, lock_holder: None) -> None:
    waiter = start_process(["up", "--lock-timeout", "60"], migrator_env(database.url))
    try:
        query = "FROM pg_stat_activity WHERE application_name = 'kata-migrate@test-pod'"
        wait_until(lambda: database.psql(f"SELECT count(*) {query}") == "1", what="the migrator to connect")
        database.psql(f"SELECT pg_terminate_backend(pid) {query}")
        _out, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 3, err
    assert "lost the database connection" in err


def test_wait_reconnects_when_the_server_closes_its_idle_session(database: Database, tmp_path: Path) -> None:
    # The server ends any session idle for 300 ms; `wait` idles a second between two polls.
    database.psql(f"ALTER ROLE postgres IN DATABASE {database.name} SET idle_session_timeout = '300ms'")
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        waiter = subprocess.Popen(
            [sys.executable, "-m", "migrator", "wait", "--timeout", "60"],
            env=process_env(migrator_env(database.url)),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_until(
                lambda: '"event": "reconnecting"' in log.read_text(), what="a reconnect", process=waiter
            )
            # `up` too has idle moments (between lock polls): its own session is exempt.
            assert run_inprocess(["up"], migrator_env(database.url)).code == 0
            assert waiter.wait(timeout=30) == 0, log.read_text()
        finally:
            waiter.kill()
    assert '"event": "ready"' in log.read_text()


def test_wait_exits_3_when_it_cannot_reconnect_within_the_connect_timeout(tmp_path: Path) -> None:
    server = PostgresServer.start(wheel_bin_dir(16))
    try:
        name = server.create_database()
        env = migrator_env(server.url(name), MIGRATOR_CONNECT_TIMEOUT="1")
        waiter = start_process(["wait", "--timeout", "60"], env)
        try:
            query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND state = 'idle'"
            wait_until(lambda: server.psql(query) == "1", what="the waiter to poll", process=waiter)
            server.halt()
            _out, err = waiter.communicate(timeout=30)
        finally:
            waiter.kill()
    finally:
        server.stop()
    assert waiter.returncode == 3, err
    assert '"event": "reconnecting"' in err and "connection refused" in err, err
    assert "cannot connect to" in err


def test_baseline_records_without_running_and_up_continues(database: Database) -> None:
    # A database whose schema was made by another tool (e.g. drizzle-kit): 0001 exists already.
    database.psql("CREATE EXTENSION vector")
    database.psql((MIGRATIONS / "0001_initial_schema.sql").read_text())
    env = migrator_env(database.url)
    refused = run_inprocess(["up"], env)  # without a baseline 0001 would run again
    assert refused.code == 6 and "run `kata-migrate baseline 1`" in refused.final_message
    outcome = run_inprocess(["baseline", "1"], env)
    assert outcome.code == 0, outcome.stderr
    assert ledger(database) == ["1|baseline"]
    assert run_inprocess(["up"], env).code == 0
    assert ledger(database) == ["1|baseline", *ALL[1:]]
    assert run_inprocess(["verify"], env).code == 0
    again = run_inprocess(["baseline", "3"], env)
    assert again.code == 0 and ledger(database) == ["1|baseline", *ALL[1:]]


def test_drift_exits_6_naming_changed_and_missing_files_and_runs_nothing(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations(
        {"0001_a.sql": "CREATE TABLE a (id int);", "0002_b.sql": "CREATE TABLE b (id int);"}
    )
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    (directory / "0001_a.sql").write_text("CREATE TABLE a (id bigint);")
    (directory / "0002_b.sql").unlink()
    (directory / "0003_c.sql").write_text("CREATE TABLE c (id int);")
    for command in (["up"], ["verify"], ["plan"], ["status", "--exit-code"]):
        outcome = run_inprocess(command, env)
        assert outcome.code == 6, (command, outcome.stderr)
        assert "0001_a.sql" in outcome.final_message and "0002_b.sql" in outcome.final_message
    assert not table_exists(database, "c")
    assert ledger(database) == ["1|applied", "2|applied"]


def test_crlf_copy_of_an_applied_file_is_not_drift(database: Database, write_migrations: Files) -> None:
    text = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n"
    directory = write_migrations({"0001_a.sql": text})
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    (directory / "0001_a.sql").write_bytes(text.replace("\n", "\r\n").encode())
    assert run_inprocess(["verify"], env).code == 0
    assert run_inprocess(["up"], env).code == 0


def test_crlf_file_applies_and_reports_positions(database: Database, write_migrations: Files) -> None:
    directory = write_migrations({"0001_a.sql": "CREATE TABLE a (id int);\r\n\r\nSELECT nope FROM a;\r\n"})
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 5
    assert "line 3, column 8" in outcome.final_message


@pytest.mark.parametrize(
    ("sql", "where", "message"),
    [
        (
            "CREATE TABLE ok_two (id int);\nSELECT 1;\nCREATE TABLE broken (id int,\n  name txet);\n",
            "line 4, column 8",
            'type "txet" does not exist',
        ),
        (
            "CREATE TABLE ok_two (id int);\n\n  SELEC 1;\n",
            "line 3, column 3",
            'syntax error at or near "SELEC"',
        ),
        (
            "CREATE TABLE ok_two (id int);\n-- no position from the server:\n  SELECT 1 / 0;\n",
            "line 3, column 3",
            "division by zero",
        ),
    ],
)
def test_failing_migration_rolls_back_exits_5_with_file_position_and_message(
    database: Database, write_migrations: Files, sql: str, where: str, message: str
) -> None:
    directory = write_migrations(
        {"0001_good.sql": "CREATE TABLE ok_one (id int);", "0002_bad.sql": sql, "0003_c.sql": "SELECT 1;"}
    )
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 5, outcome.stderr
    assert f"0002_bad.sql failed at {where}" in outcome.final_message
    assert message in outcome.final_message
    assert table_exists(database, "ok_one") and not table_exists(database, "ok_two")
    assert ledger(database) == ["1|applied"]


def test_statement_timeout_setting_applies_to_migrations(database: Database, write_migrations: Files) -> None:
    directory = write_migrations({"0001_slow.sql": "SELECT pg_sleep(5);"})
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory), MIGRATOR_STATEMENT_TIMEOUT="0.2")
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 5
    # pg_sleep(5) would have finished and succeeded (code 0) without the timeout.
    assert "statement timeout" in outcome.final_message
    assert "migration_applied" not in outcome.names() and ledger(database) == []


def test_ddl_lock_timeout_stops_a_migration_queued_behind_a_long_transaction(
    database: Database, write_migrations: Files
) -> None:
    """Without a retry budget the first lock timeout ends the run: exit 11, nothing recorded."""
    database.psql("CREATE TABLE busy (id int)")
    holder = database.server.psql_session(  # a long transaction holding a lock the migration needs
        database.name, "BEGIN; LOCK TABLE busy; SELECT pg_sleep(30); COMMIT;"
    )
    try:
        wait_until(
            lambda: (
                database.psql("SELECT count(*) FROM pg_locks WHERE relation = 'busy'::regclass AND granted")
                != "0"
            )
        )
        directory = write_migrations({"0001_alter.sql": "ALTER TABLE busy ADD COLUMN note text;"})
        outcome = run_inprocess(
            ["up", "--ddl-lock-timeout", "0.3", "--lock-retry-budget", "0"],
            migrator_env(database.url, MIGRATIONS_DIR=str(directory)),
        )
    finally:
        holder.kill()
        holder.wait()
    assert outcome.code == 11, outcome.stderr
    assert "blocked by other sessions' locks" in outcome.final_message and ledger(database) == []
    (blocked,) = [e for e in outcome.events() if e["event"] == "lock_blocked"]
    assert "canceling statement due to lock timeout (SQLSTATE 55P03)" in str(blocked["msg"])


def test_lock_held_elsewhere_exits_7_naming_holder(database: Database) -> None:
    holder = database.server.psql_session(
        database.name,
        f"SELECT pg_advisory_lock({LOCK_CLASS}, {LOCK_OBJECT}); SELECT pg_sleep(60);",
        application_name="other-migrator",
    )
    try:
        wait_until(lambda: database.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "1")
        pid = database.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'other-migrator'")
        outcome = run_inprocess(["up", "--lock-timeout", "1"], migrator_env(database.url))
    finally:
        holder.kill()
        holder.wait()
    assert outcome.code == 7, outcome.stderr
    assert "other-migrator" in outcome.final_message and f"pid {pid}" in outcome.final_message
    assert "connected since" in outcome.final_message
    assert "lock_waiting" in outcome.names()
    assert ledger(database) == [] and not table_exists(database, "contexts")


def test_closed_port_exits_3_after_retrying_until_the_deadline() -> None:
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/postgres?sslmode=disable"
    outcome = run_inprocess(["up", "--connect-timeout", "1.5"], migrator_env(url))
    assert outcome.code == 3
    assert "connection refused" in outcome.final_message
    # Backoff from 0.25 s doubling: at least two retries before a 1.5 s deadline, and never a
    # fourth (0.25 + 0.5 + 1.0 > 1.5), however slow each attempt is. The verdict names the wait,
    # by the migrator's own clock, which cannot end before the deadline.
    assert 2 <= outcome.names().count("connect_retry") <= 3
    waited = re.search(r"after ([\d.]+) s", outcome.final_message)
    assert waited is not None and float(waited[1]) >= 1.5, outcome.final_message


def test_wrong_password_exits_3_at_once(database: Database) -> None:
    url = database.server.url(database.name, password="not-the-password")
    outcome = run_inprocess(["up", "--connect-timeout", "30"], migrator_env(url))
    assert outcome.code == 3
    assert "authentication failed" in outcome.final_message
    assert "connect_retry" not in outcome.names()  # not retried: no amount of waiting fixes it


def test_server_starting_late_is_waited_for(tmp_path: Path) -> None:
    server = PostgresServer.start(wheel_bin_dir(16))
    try:
        name = server.create_database()
        server.halt()
        log = tmp_path / "stderr.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "migrator", "up", "--connect-timeout", "60"],
                env=process_env(migrator_env(server.url(name))),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                wait_until(lambda: "connect_retry" in log.read_text(), what="a failed connection attempt")
                server.resume()
                assert proc.wait(timeout=60) == 0, log.read_text()
            finally:
                proc.kill()
        assert "migrations_applied" in log.read_text()
    finally:
        server.stop()


def test_pooled_database_url_migrates_through_the_unpooled_one(database: Database) -> None:
    env = migrator_env("postgresql://app:pw@ep-x-pooler.invalid/app", DATABASE_URL_UNPOOLED=database.url)
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert ledger(database) == ALL


def test_sentinel_password_never_appears_on_any_path(database: Database, write_migrations: Files) -> None:
    sentinel = "Sentinel-Pw-7f3a9c"
    server = database.server
    server.create_role("migrator_sentinel_user", sentinel, "SUPERUSER")
    url = server.url(database.name, user="migrator_sentinel_user", password=sentinel)
    bad = write_migrations({"0001_bad.sql": f"SELECT '{sentinel[:3]}' + ;"})
    runs = [
        run_process(["up"], migrator_env(url.replace("sslmode=disable", "sslmode=bogus"))),  # 2
        run_process(["up"], migrator_env(url.replace(":" + str(server.port), ":99999"))),  # 2
        run_process(["up"], migrator_env(url.replace(sentinel, sentinel + "x"))),  # 3
        run_process(
            ["up", "--connect-timeout", "0.5"], migrator_env(url.replace(str(server.port), str(free_port())))
        ),
        run_process(["up"], migrator_env(url.replace("127.0.0.1", "ep-s-pooler.invalid"))),  # 9
        run_process(["up", "--migrations", str(bad)], migrator_env(url)),  # 5
        run_process(["verify"], migrator_env(url)),  # 8
        run_process(["up"], migrator_env(url)),  # 0
        run_process(["status", "--json"], migrator_env(url, MIGRATOR_LOG_FORMAT="text")),
    ]
    assert [r.code for r in runs] == [2, 2, 3, 3, 9, 5, 8, 0, 0]
    for outcome in runs:
        assert sentinel not in outcome.stdout + outcome.stderr
        assert "Traceback" not in outcome.stderr


def test_drift_names_a_missing_file_as_it_was_named_not_rebuilt_from_its_version(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations({"3_b.sql": "CREATE TABLE b (id int);"})
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    (directory / "3_b.sql").unlink()
    (directory / "0004_c.sql").write_text("CREATE TABLE c (id int);")
    outcome = run_inprocess(["verify"], env)
    assert outcome.code == 6, outcome.stderr
    assert "missing here: 3_b.sql" in outcome.final_message, outcome.final_message
    assert "0003_b.sql" not in outcome.final_message


def test_a_ledger_from_before_file_names_gains_the_column_and_old_rows_are_named_by_version(
    database: Database, write_migrations: Files
) -> None:
    first = "CREATE TABLE a (id int);"
    directory = write_migrations({"0001_a.sql": first, "0002_b.sql": "CREATE TABLE b (id int);"})
    database.psql(
        "CREATE TABLE public.kata_schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), duration_ms "
        "double precision NOT NULL, applied_by text NOT NULL, kind text NOT NULL DEFAULT 'applied'); "
        f"CREATE TABLE a (id int); INSERT INTO public.kata_schema_migrations "
        f"(version, name, checksum, duration_ms, applied_by) VALUES (1, 'a', '{checksum(first)}', 1, 'old')"
    )
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    files = database.psql(
        "SELECT version || ':' || coalesce(file, '-') FROM public.kata_schema_migrations ORDER BY 1"
    )
    assert files.split() == ["1:-", "2:0002_b.sql"]
    (directory / "0001_a.sql").unlink()
    outcome = run_inprocess(["verify"], env)
    assert outcome.code == 6 and "missing here: version 1 (a)" in outcome.final_message, outcome.stderr
