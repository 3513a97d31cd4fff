"""Index builds configured by the migrator, server notices as events, and progress on long
statements, against the real server (issue 13)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from migrator.events import EventLog
from migrator.limits import RunLimits
from migrator.progress import ProgressWatcher
from migrator.runner import migrate
from schema.catalog import read_catalog
from tests.conftest import Database
from tests.migrator.conftest import migrator_env, run_inprocess
from tests.polling import wait_until

Files = Callable[[dict[str, str | bytes]], Path]
NO_TX = "-- migrate: no-transaction\n"
SEEN = "CREATE TABLE seen AS SELECT current_setting('maintenance_work_mem') AS mem, " + (
    "current_setting('max_parallel_maintenance_workers') AS workers;\n"
)


def test_index_build_settings_apply_to_no_transaction_files_only(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations(
        {"0001_tx.sql": SEEN.replace("seen", "seen_tx"), "0002_build.sql": NO_TX + SEEN}
    )
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(directory),
        MIGRATOR_MAINTENANCE_WORK_MEM="96MB",
        MIGRATOR_MAX_PARALLEL_MAINTENANCE_WORKERS="0",
    )
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert database.psql("SELECT mem || ' ' || workers FROM seen") == "96MB 0"
    defaults = database.psql("SELECT current_setting('maintenance_work_mem')")
    assert database.psql("SELECT mem FROM seen_tx") == defaults


def test_index_build_defaults_are_256mb_and_one_worker(database: Database, write_migrations: Files) -> None:
    directory = write_migrations({"0001_build.sql": NO_TX + SEEN})
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory))).code == 0
    assert database.psql("SELECT mem || ' ' || workers FROM seen") == "256MB 1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MIGRATOR_MAINTENANCE_WORK_MEM", "256"),
        ("MIGRATOR_MAINTENANCE_WORK_MEM", "256mb"),
        ("MIGRATOR_MAINTENANCE_WORK_MEM", "512kB"),
        ("MIGRATOR_MAINTENANCE_WORK_MEM", "9000GB"),
        ("MIGRATOR_MAINTENANCE_WORK_MEM", "1e3MB"),
        ("MIGRATOR_MAX_PARALLEL_MAINTENANCE_WORKERS", "-1"),
        ("MIGRATOR_MAX_PARALLEL_MAINTENANCE_WORKERS", "2000"),
        ("MIGRATOR_MAX_PARALLEL_MAINTENANCE_WORKERS", "٢"),
    ],
)
def test_index_build_settings_out_of_range_are_usage_errors(name: str, value: str) -> None:
    outcome = run_inprocess(["up"], migrator_env("postgresql://u@127.0.0.1:1/db", **{name: value}))
    assert outcome.code == 2
    assert name in outcome.final_message


def test_pgvectors_no_longer_fits_notice_becomes_a_warning_event_naming_the_file(
    database: Database, write_migrations: Files
) -> None:
    # 1 MB of maintenance_work_mem holds about 140 graph elements of 1536 dimensions.
    database.psql(
        "CREATE EXTENSION vector; CREATE TABLE docs (embedding vector(1536));"
        "INSERT INTO docs SELECT ARRAY(SELECT random() + 0 * t.i FROM generate_series(1, 1536))::vector "
        "FROM generate_series(1, 400) AS t(i)"
    )
    directory = write_migrations(
        {
            "0001_hnsw.sql": NO_TX + "CREATE INDEX CONCURRENTLY docs_hnsw ON docs USING hnsw "
            "(embedding vector_cosine_ops);\n",
            "0002_warn.sql": "DO $$ BEGIN RAISE WARNING 'careful' USING HINT = 'look'; END $$;\n",
        }
    )
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory), MIGRATOR_MAINTENANCE_WORK_MEM="1MB")
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    notices = [e for e in outcome.events() if e["event"] == "server_notice"]
    fits = [e for e in notices if "no longer fits into maintenance_work_mem" in str(e["msg"])]
    assert fits and fits[0]["file"] == "0001_hnsw.sql" and fits[0]["severity"] == "NOTICE"
    warning = next(e for e in notices if e["msg"] == "careful")
    assert warning["level"] == "warning" and warning["file"] == "0002_warn.sql" and warning["hint"] == "look"


class BackgroundUp:
    """`migrate` with a short progress interval in its own thread and event loop, so the test can
    watch its events and steer the database from outside."""

    def __init__(self, database: Database, directory: Path, limits: RunLimits | None = None) -> None:
        self.stream = io.StringIO()
        self.log = EventLog(self.stream)
        self.database = database
        self.directory = directory
        self.limits = limits or RunLimits()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            asyncio.run(self._migrate())
        except BaseException as exc:
            self.error = exc

    async def _migrate(self) -> None:
        conn = await asyncpg.connect(self.database.url)
        watcher = ProgressWatcher(lambda: asyncpg.connect(self.database.url), self.log, interval=0.1)
        try:
            await migrate(conn, read_catalog(self.directory), self.limits, "test", self.log, watcher)
        finally:
            await watcher.close()
            await conn.close()

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def progress(self) -> list[dict[str, object]]:
        return [e for e in self.events() if e["event"] == "statement_progress"]

    def finish(self) -> list[str]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive() and self.error is None, self.error
        return [str(e["event"]) for e in self.events()]


def test_a_long_statement_reports_progress_until_it_ends(database: Database, write_migrations: Files) -> None:
    database.psql("CREATE TABLE release_flag (x int)")
    # A real slow statement that ends when the test says so, not after a guessed time.
    slow = (
        "DO $$ BEGIN WHILE NOT EXISTS (SELECT FROM release_flag) LOOP PERFORM pg_sleep(0.05); END LOOP; "
        "END $$;"
    )
    run = BackgroundUp(database, write_migrations({"0001_slow.sql": f"SELECT 1;\n{slow}\n"}))
    run.thread.start()
    wait_until(lambda: len(run.progress()) >= 2, what="two statement_progress events")
    database.psql("INSERT INTO release_flag VALUES (1)")
    names = run.finish()
    first = run.progress()[0]
    assert first["file"] == "0001_slow.sql" and first["line"] == 2
    assert isinstance(first["elapsed_s"], float) and "phase" not in first
    started, applied = names.index("migration_started"), names.index("migration_applied")
    assert all(started < i < applied for i, name in enumerate(names) if name == "statement_progress")


def test_an_index_build_reports_its_phase_and_percent(database: Database, write_migrations: Files) -> None:
    database.psql("CREATE TABLE big (x int); INSERT INTO big SELECT generate_series(1, 20000)")
    build = NO_TX + "CREATE INDEX CONCURRENTLY big_x ON big (x);\n"
    run = BackgroundUp(database, write_migrations({"0001_index.sql": build}))
    # An open writer makes the concurrent build wait in a phase of its own until it commits.
    writer = database.server.psql_session(database.name, application_name="open-writer")
    assert writer.stdin is not None
    try:
        writer.stdin.write("BEGIN;\nINSERT INTO big VALUES (0);\n")
        writer.stdin.flush()
        idle = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'open-writer' AND state = 'idle in transaction'"
        )
        wait_until(lambda: database.psql(idle) == "1", what="the writer's open transaction")
        run.thread.start()
        wait_until(
            lambda: any("waiting for writers" in str(e.get("phase")) for e in run.progress()),
            what="a progress event in the phase 'waiting for writers before build'",
        )
        writer.stdin.write("COMMIT;\n")
        writer.stdin.close()
        writer.wait(timeout=30)
    finally:
        writer.kill()
    run.finish()
    phased = [e for e in run.progress() if "phase" in e]
    assert phased[0]["file"] == "0001_index.sql"
    assert all(isinstance(e["lockers_total"], int) for e in phased)
    assert all(e["percent"] is None or 0 <= float(e["percent"]) <= 100 for e in phased)  # type: ignore[arg-type]
    assert database.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_x'::regclass") == "t"


def waiting_long(run: BackgroundUp) -> list[dict[str, object]]:
    """Progress events of a build in a waiting phase for at least a second."""
    return [
        e for e in run.progress() if "waiting" in str(e.get("phase")) and float(str(e["elapsed_s"])) >= 1.0
    ]


def test_a_concurrent_build_waits_past_the_ddl_lock_timeout_naming_the_session_it_waits_for(
    database: Database, write_migrations: Files
) -> None:
    database.psql("CREATE TABLE big (x int); INSERT INTO big SELECT generate_series(1, 1000)")
    build = NO_TX + "CREATE INDEX CONCURRENTLY big_x ON big (x);\n"
    limits = RunLimits(ddl_lock_timeout=0.2, concurrent_wait_timeout=600, lock_retry_budget=0)
    run = BackgroundUp(database, write_migrations({"0001_index.sql": build}), limits)
    secret = "kata-secret-9c1d"
    writer = database.server.psql_session(database.name, application_name="open-writer")
    assert writer.stdin is not None
    try:
        writer.stdin.write(f"BEGIN;\nINSERT INTO big SELECT length('{secret}');\n")
        writer.stdin.flush()
        idle = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'open-writer' AND state = 'idle in transaction'"
        )
        wait_until(lambda: database.psql(idle) != "", what="the writer's open transaction")
        pid = int(database.psql(idle))
        run.thread.start()
        # Five times the DDL lock timeout into its wait, the build is still waiting, not failed.
        wait_until(lambda: bool(waiting_long(run)), what="progress of a build waiting for over a second")
        writer.stdin.write("COMMIT;\n")
        writer.stdin.close()
        writer.wait(timeout=30)
    finally:
        writer.kill()
    names = run.finish()
    assert "lock_blocked" not in names and "migration_applied" in names
    event = waiting_long(run)[0]
    assert event["current_locker_pid"] == pid and event["locker_application_name"] == "open-writer"
    assert event["locker_state"] == "idle in transaction" and event["lockers_done"] == 0
    assert isinstance(event["locker_transaction_age_s"], float)
    assert f"now open-writer (pid {pid}, idle in transaction" in str(event["msg"])
    assert secret not in run.stream.getvalue()
    assert database.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_x'::regclass") == "t"


class Terminal(io.StringIO):
    """A stream that says it is a terminal: what a text log on a TTY writes, kept for reading."""

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_updating_line_that_the_next_event_replaces() -> None:
    stream = Terminal()
    log = EventLog(stream, fmt="text")
    log.transient("statement_progress", "running for 10 s")
    log.transient("statement_progress", "running for 20 s")
    log.info("migration_applied")
    written = stream.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")
    assert written.count("\r\x1b[K") == 3  # each progress line and the event after them rewrite the line
    piped = io.StringIO()
    EventLog(piped, fmt="text").transient("statement_progress", "running")
    assert piped.getvalue().endswith("\n") and "\r" not in piped.getvalue()
