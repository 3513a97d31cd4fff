"""The migrator under faults: SIGKILL at random points, a stuck lock holder, a DDL lock blocked
past the retry budget.

The SIGKILL loop runs FAULT_ITERATIONS times (default 20; 5 when CI is set). The full run:
`FAULT_ITERATIONS=20 .venv/bin/python -m pytest tests/faults -k sigkill`.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from localpg.throwaway import PostgresServer
from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from schema.catalog import packaged_migrations_dir
from tests.conftest import Database
from tests.faults.conftest import iterations, migrate, run_migrator
from tests.faults.probe_process import REPO

EXIT_LOCK_TIMEOUT = 7
EXIT_BLOCKED = 11


def ledger_versions(database: Database) -> list[int]:
    out = database.psql("SELECT version FROM kata_schema_migrations ORDER BY version")
    return [int(v) for v in out.split()]


def start_migrator(url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MIGRATOR_", "MIGRATIONS_"))}
    env["DATABASE_URL"] = url
    return subprocess.Popen(
        [sys.executable, "-m", "migrator", "up", "--log-format", "text"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def kill_after(process: subprocess.Popen[str], events: int, delay: float) -> int:
    """SIGKILL once the process logged `events` lines, plus `delay` seconds; the lines read."""
    assert process.stderr is not None
    seen = 0
    while seen < events and process.stderr.readline():
        seen += 1
    if delay:
        time.sleep(delay)  # where in the next step the kill lands: the fault, not synchronisation
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return seen


def test_sigkill_at_random_points_then_rerun_matches_a_clean_run(pg_server: PostgresServer) -> None:
    clean = pg_server.create_database("clean")
    try:
        first = start_migrator(pg_server.url(clean))
        assert first.stderr is not None
        lines = first.stderr.read().splitlines()
        assert first.wait(120) == 0, lines
        reference = pg_server.schema_dump(clean, owners=False)
    finally:
        pg_server.drop_database(clean)
    files = len(list(packaged_migrations_dir().glob("*.sql")))
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    for iteration in range(iterations(full=20, ci=5)):
        name = pg_server.create_database("kill")
        database = Database(pg_server, name)
        try:
            events, delay = rng.randrange(len(lines)), rng.choice([0.0, rng.uniform(0, 0.05)])
            kill_after(start_migrator(database.url), events, delay)
            context = (
                f"seed {seed}, iteration {iteration}, killed after {events} events + {delay * 1000:.0f} ms"
            )
            rerun = run_migrator(database.url, "up")
            assert rerun.returncode == 0, f"{context}: rerun exited {rerun.returncode}\n{rerun.stderr}"
            assert len(ledger_versions(database)) == files, context
            assert pg_server.schema_dump(name, owners=False) == reference, context
        finally:
            pg_server.drop_database(name)


class Session:
    """One asyncpg connection on a private event loop, for holding locks across a subprocess run."""

    def __init__(self, url: str, application_name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(
            asyncpg.connect(url, server_settings={"application_name": application_name})
        )

    def execute(self, sql: str, *args: object) -> object:
        return self.loop.run_until_complete(self.conn.execute(sql, *args))

    def fetchval(self, sql: str, *args: object) -> object:
        return self.loop.run_until_complete(self.conn.fetchval(sql, *args))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def test_lock_held_by_a_stuck_session_ends_with_exit_7_naming_it(database: Database) -> None:
    stuck = Session(database.url, "stuck-session")
    try:
        stuck.execute("SELECT pg_advisory_lock($1::int, $2::int)", LOCK_CLASS, LOCK_OBJECT)
        pid = stuck.fetchval("SELECT pg_backend_pid()")
        result = run_migrator(database.url, "up", "--lock-timeout", "1")
        assert result.returncode == EXIT_LOCK_TIMEOUT, result.stderr
        assert "stuck-session" in result.stderr
        assert f"pid {pid}" in result.stderr
        assert database.psql("SELECT to_regclass('contexts') IS NULL") == "t"
    finally:
        stuck.close()
    migrate(database.url)


def test_a_table_locked_past_the_retry_budget_exits_11_naming_the_blocker_and_a_later_run_succeeds(
    migrated: Database, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    # Without snapshots/: a snapshots folder must hold one for every file, 9001 included.
    shutil.copytree(
        packaged_migrations_dir(),
        migrations,
        ignore=shutil.ignore_patterns("*.py", "__pycache__", "snapshots"),
    )
    (migrations / "9001_contexts_note.sql").write_text("ALTER TABLE contexts ADD COLUMN note text;\n")
    reader = Session(migrated.url, "long-report")
    try:
        reader.execute("BEGIN")
        # ACCESS SHARE until the transaction ends; the query's text must never reach the output.
        reader.execute('SELECT count(*) AS "kata-secret-report" FROM contexts')
        pid = reader.fetchval("SELECT pg_backend_pid()")
        failed = run_migrator(
            migrated.url,
            "up",
            *("--migrations", str(migrations), "--ddl-lock-timeout", "0.5", "--lock-retry-budget", "2"),
        )
        assert failed.returncode == EXIT_BLOCKED, failed.stderr
        final = failed.stderr.splitlines()[-1]
        assert "blocked_by_locks" in final and "9001_contexts_note.sql" in final
        assert f"long-report (pid {pid}" in final and "nothing recorded; safe to retry" in final
        assert "lock_blocked" in failed.stderr and "lock_retry" in failed.stderr
        assert "kata-secret-report" not in failed.stderr and "Traceback" not in failed.stderr
        assert 9001 not in ledger_versions(migrated)
        column = (
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'contexts' AND column_name = 'note'"
        )
        assert migrated.psql(column) == "0"
        assert (
            migrated.psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND a.application_name LIKE 'kata-migrate%'"
            )
            == "0"
        )
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    retried = run_migrator(migrated.url, "up", "--migrations", str(migrations))
    assert retried.returncode == 0, retried.stderr
    assert 9001 in ledger_versions(migrated)


@pytest.mark.parametrize("signal_name", ["SIGTERM"])
def test_sigterm_mid_run_leaves_nothing_half_applied(database: Database, signal_name: str) -> None:
    process = start_migrator(database.url)
    assert process.stderr is not None
    while (line := process.stderr.readline()) and "migration_started" not in line:
        pass
    process.send_signal(getattr(signal, signal_name))
    code = process.wait(60)
    assert code in (0, 143), process.stderr.read()
    assert run_migrator(database.url, "up").returncode == 0
