"""`baseline` and `up` started together as real processes: the migrator lock orders them, so the
baseline's check and its record see one schema and never interleave with `up`'s files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from tests.conftest import Database
from tests.fixtures.expected_schema import migrations_up_to
from tests.migrator.conftest import ledger, migrator_env, run_inprocess, start_process
from tests.polling import wait_until
from tests.schema.conftest import LATEST


@pytest.fixture
def previous_version(database: Database, tmp_path: Path) -> Database:
    """An older image migrated to LATEST - 1: the new `up` (it builds LATEST's index) and a
    `baseline LATEST` then start together. (An empty database is refused before the lock;
    tests/migrator/test_processes.py covers that race.)"""
    older = migrations_up_to(tmp_path, LATEST - 1)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(older))).code == 0
    return database


@pytest.fixture
def held_lock(previous_version: Database) -> Iterator[subprocess.Popen[str]]:
    database = previous_version
    """The migrator lock held by a psql session; `release()` lets the waiters race for it."""
    holder = database.server.psql_session(database.name, application_name="race-holder")
    assert holder.stdin is not None
    holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_CLASS}, {LOCK_OBJECT});\n")
    holder.stdin.flush()
    wait_until(
        lambda: database.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1",
        what="the holder to take the lock",
    )
    yield holder
    if not holder.stdin.closed:
        holder.stdin.close()
        holder.wait(10)


def waiting_migrators(database: Database) -> int:
    # A waiter logs lock_waiting after its first failed try; its session is then idle between polls.
    return int(
        database.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'kata-migrate@race-%'"
        )
    )


def test_baseline_and_up_started_together_leave_one_consistent_ledger(
    database: Database, held_lock: subprocess.Popen[str]
) -> None:
    up = start_process(["up"], migrator_env(database.url, POD_NAME="race-up"))
    baseline = start_process(["baseline", str(LATEST)], migrator_env(database.url, POD_NAME="race-baseline"))
    wait_until(lambda: waiting_migrators(database) == 2, what="both migrators to wait for the lock")
    assert held_lock.stdin is not None
    held_lock.stdin.close()  # psql ends its session, releasing the lock: both waiters race for it
    held_lock.wait(10)
    _, up_err = up.communicate(timeout=120)
    _, base_err = baseline.communicate(timeout=120)
    assert up.returncode == 0, up_err
    # Whoever took the lock first: baseline before up finds LATEST's index missing and records
    # nothing (exit 6); baseline after up finds every version applied and nothing to record (0).
    assert baseline.returncode in (0, 6), base_err
    if baseline.returncode == 6:
        final = json.loads(base_err.strip().splitlines()[-1])
        assert final["event"] == "baseline_refused"
    assert ledger(database) == [f"{v}|applied" for v in range(1, LATEST + 1)]
    assert run_inprocess(["verify"], migrator_env(database.url)).code == 0
