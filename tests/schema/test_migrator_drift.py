"""`verify`, `status`, `up` and `wait` compare the live schema with the snapshot of the ledger's
version: `verify` and `status --exit-code` exit 6 on any drift with the diff; `up` and `wait` exit 6
on breaking drift (`up` applying nothing) and go on past degraded drift with a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.drift import BREAKING, DEGRADED
from tests.conftest import Database
from tests.fixtures.expected_schema import HAND_MADE_DRIFT, migrations_up_to
from tests.migrator.conftest import ledger, migrator_env, run_inprocess
from tests.schema.conftest import LATEST

REPAIR = "run `kata-migrate repair`"
# An image before 0005, which builds messages_embedding_idx: the tests below watch that index.
BEFORE_HNSW = 4


@pytest.mark.parametrize(("sql", "name", "class_"), HAND_MADE_DRIFT)
def test_verify_and_status_exit_6_naming_any_hand_made_drift(
    migrated: Database, sql: str, name: str, class_: str
) -> None:
    env = migrator_env(migrated.url)
    migrated.psql(sql)
    for command in (["verify"], ["status", "--exit-code"]):
        outcome = run_inprocess(command, env)
        assert outcome.code == 6, (command, outcome.stderr)
        message = outcome.final_message
        assert f"drift: the live schema differs from what migrations 1..{LATEST} create" in message
        assert f"{class_}: " in message and f" {name} " in message
        # Repair restores indexes and constraints; a column or type it cannot invent.
        assert (REPAIR in message.lower()) == (class_ == DEGRADED), message
    assert f"{class_}: " in run_inprocess(["status"], env).stdout


@pytest.mark.parametrize(("sql", "name", "class_"), HAND_MADE_DRIFT)
def test_up_and_wait_stop_on_breaking_drift_and_warn_on_degraded(
    migrated: Database, sql: str, name: str, class_: str
) -> None:
    env = migrator_env(migrated.url, MIGRATOR_WAIT_TIMEOUT="5")
    migrated.psql(sql)
    for command in ("up", "wait"):
        outcome = run_inprocess([command], env)
        if class_ == BREAKING:
            assert outcome.code == 6, (command, outcome.stderr)
            assert "breaking: " in outcome.final_message and f" {name} " in outcome.final_message
            continue
        assert outcome.code == 0, (command, outcome.stderr)
        [warning] = [e for e in outcome.events() if e["event"] == "schema_degraded"]
        assert warning["level"] == "warning" and warning["objects"] == [name], warning
        assert REPAIR in str(warning["msg"]), warning


def test_up_refuses_before_applying_anything_when_the_ledgers_version_has_breaking_drift(
    database: Database, tmp_path: Path
) -> None:
    older = migrations_up_to(tmp_path, BEFORE_HNSW)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(older))).code == 0
    database.psql("ALTER TABLE messages DROP COLUMN tool_name")
    before = ledger(database)
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 6, outcome.stderr
    assert "column messages.tool_name is missing" in outcome.final_message
    assert "(created by 0001_initial_schema.sql)" in outcome.final_message
    assert ledger(database) == before
    assert database.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_embedding_idx'") == "0"


def test_up_goes_on_past_degraded_drift_and_applies_what_is_pending(
    database: Database, tmp_path: Path
) -> None:
    older = migrations_up_to(tmp_path, BEFORE_HNSW)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(older))).code == 0
    database.psql("ALTER TABLE contexts DROP CONSTRAINT contexts_total_tokens_non_negative")
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    names = outcome.names()
    assert names.index("schema_degraded") < names.index("migration_applied")
    assert "(created by 0003_non_negative_counters.sql)" in str(
        outcome.events()[names.index("schema_degraded")]
    )
    assert len(ledger(database)) == LATEST
    assert database.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_embedding_idx'") == "1"
    assert run_inprocess(["verify"], migrator_env(database.url)).code == 6  # still degraded: repair it


def test_objects_a_later_migration_left_behind_are_not_drift_for_the_ledgers_version(
    database: Database, tmp_path: Path
) -> None:
    # A failed no-transaction file of version N+1 leaves what it did; the ledger stays at N and
    # snapshot N does not hold those objects, so `up` runs the file again instead of refusing.
    older = migrations_up_to(tmp_path, BEFORE_HNSW)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(older))).code == 0
    database.psql("CREATE INDEX messages_embedding_idx ON messages USING hnsw (embedding vector_cosine_ops)")
    assert run_inprocess(["verify"], migrator_env(database.url, MIGRATIONS_DIR=str(older))).code == 0
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    assert run_inprocess(["verify"], migrator_env(database.url)).code == 0


def test_a_migrations_directory_without_snapshots_is_run_with_a_warning(
    database: Database, tmp_path: Path
) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(tmp_path)))
    assert outcome.code == 0
    assert "schema_unchecked" in outcome.names()
