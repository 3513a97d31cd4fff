"""0006 (`contexts_parent_id_idx`) through the release lifecycle with the `kata-migrate` console
script as the Job runs it: a database at 5 that holds the application's forks is upgraded by
applying 0006 alone, and an image that ships 0001-0005 runs on the database at 6 (`kubectl rollout
undo`): an added index is no reason to refuse it. The index serves both lookups on parent_id and
leaves ON DELETE SET NULL as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.fixtures.expected_schema import migrations_up_to
from tests.migrator.conftest import REPO, Outcome, ledger, migrator_env, process_env

FORK_INDEX = "0006_contexts_parent_id_idx.sql"
VERSION = int(FORK_INDEX[:4])
KATA_MIGRATE = Path(sys.executable).parent / "kata-migrate"
PARENT = "00000000-0000-0000-0000-0000000000a0"
FORKS = [f"00000000-0000-0000-0000-0000000000b{n}" for n in range(3)]
# What the application keeps: a parent, its forks (each naming the version it forked at), messages.
APPLICATION_DATA = (
    f"INSERT INTO contexts (id, name, latest_version) VALUES ('{PARENT}', 'parent', 2); "
    "INSERT INTO contexts (id, name, parent_id, fork_version) "
    f"SELECT id::uuid, 'fork', '{PARENT}', 1 FROM unnest(ARRAY{FORKS}) id; "
    "INSERT INTO contexts (name) SELECT 'unrelated ' || g FROM generate_series(1, 50) g; "
    "INSERT INTO messages (context_id, version, role, content) "
    f"VALUES ('{PARENT}', 1, 'user', 'hello'), ('{PARENT}', 2, 'assistant', 'hi')"
)
LISTING = f"SELECT id FROM contexts WHERE parent_id = '{PARENT}'"


def kata_migrate(args: list[str], env: Mapping[str, str]) -> Outcome:
    """The console script as a process of its own, as the Job's container runs it."""
    started = time.monotonic()
    result = subprocess.run(
        [str(KATA_MIGRATE), *args],
        env=process_env(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def uses_fork_index(database: Database, sql: str, setup: str = "") -> bool:
    """Whether the planner can answer `sql` from the partial index (sequential scans off: on a
    table this small it would rather scan, which says nothing about whether the index fits)."""
    plan = database.psql(f"SET enable_seqscan = off; {setup} EXPLAIN (COSTS OFF) {sql}")
    return "contexts_parent_id_idx" in plan


@pytest.fixture
def at_version_5(database: Database, tmp_path: Path) -> Path:
    """A database an image shipping 0001-0005 migrated and the application filled; that image's
    migrations folder (with its snapshots)."""
    older = migrations_up_to(tmp_path, VERSION - 1)
    assert not (older / FORK_INDEX).exists()
    outcome = kata_migrate(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(older)))
    assert outcome.code == 0, outcome.stderr
    database.psql(APPLICATION_DATA)
    return older


def test_upgrading_a_filled_database_at_5_applies_0006_alone_and_verifies(
    database: Database, at_version_5: Path
) -> None:
    assert not uses_fork_index(database, LISTING)
    env = migrator_env(database.url)
    up = kata_migrate(["up"], env)
    assert up.code == 0, up.stderr
    assert [e["file"] for e in up.events() if e["event"] == "migration_applied"] == [FORK_INDEX]
    assert ledger(database) == [f"{v}|applied" for v in range(1, VERSION + 1)]
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'contexts_parent_id_idx'::regclass"
    assert database.psql(valid) == "t"
    verify = kata_migrate(["verify"], env)
    assert verify.code == 0, verify.stderr

    # The fork listing and the foreign key's SET NULL lookup (a generic plan, as its trigger's).
    assert uses_fork_index(database, LISTING)
    prepared = (
        "SET plan_cache_mode = force_generic_plan; "
        "PREPARE set_null(uuid) AS UPDATE ONLY contexts SET parent_id = NULL WHERE $1 = parent_id;"
    )
    assert uses_fork_index(database, f"EXECUTE set_null('{PARENT}')", prepared)
    # An index only: a parent's hard delete still leaves its forks, unparented, with their version.
    database.psql(f"DELETE FROM contexts WHERE id = '{PARENT}'")
    forks = database.psql(
        f"SELECT count(*) FROM contexts WHERE id = ANY (ARRAY{FORKS}::uuid[]) "
        "AND parent_id IS NULL AND fork_version = 1"
    )
    assert forks == str(len(FORKS))
    assert kata_migrate(["verify"], env).code == 0


def test_an_image_with_0001_to_0005_runs_on_the_database_0006_migrated(
    database: Database, at_version_5: Path
) -> None:
    assert kata_migrate(["up"], migrator_env(database.url)).code == 0
    applied = ledger(database)
    env = migrator_env(database.url, MIGRATIONS_DIR=str(at_version_5), MIGRATOR_WAIT_TIMEOUT="5")
    for command in (["wait"], ["up"], ["verify"], ["status", "--json", "--exit-code"]):
        outcome = kata_migrate(command, env)
        assert outcome.code == 0, (command, outcome.stderr)
        [ahead] = [e for e in outcome.events() if e["event"] == "ledger_ahead"]
        assert (ahead["ahead"], ahead["latest"]) == ([FORK_INDEX], VERSION - 1), ahead
        assert "migration_applied" not in outcome.names()
    document = json.loads(outcome.stdout)
    assert (document["version"], document["latest"], document["ahead"]) == (VERSION, VERSION - 1, [VERSION])
    assert document["schema"]["drift"] == []
    assert ledger(database) == applied
    # Rolled forward again: nothing to do, the index kept as it is.
    again = kata_migrate(["up"], migrator_env(database.url))
    assert again.code == 0 and "nothing_to_do" in again.names(), again.stderr
    assert uses_fork_index(database, LISTING)
