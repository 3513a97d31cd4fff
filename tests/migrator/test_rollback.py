"""Rolling back: an image whose latest migration is below the ledger's (`kubectl rollout undo`
after a newer image's Job migrated) runs `wait` and `up` (a no-op) and passes `verify`, `status`
and `plan` while the live schema still holds what its own migrations create; when a newer contract
step removed or changed what it needs, it exits 6 naming each object and the newer file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Database
from tests.fixtures.expected_schema import (
    CONTRACT,
    CONTRACT_INDEX,
    EXPAND,
    NEXT,
    migrations_up_to,
    newer_image,
)
from tests.migrator.conftest import Outcome, ledger, migrator_env, run_inprocess
from tests.schema.conftest import LATEST


def ahead_event(outcome: Outcome) -> dict[str, object]:
    [event] = [e for e in outcome.events() if e["event"] == "ledger_ahead"]
    return event


def rolled_back(
    database: Database, scratch_database: Database, tmp_path: Path, migration: tuple[str, str]
) -> tuple[str, dict[str, str]]:
    """`database` migrated by a newer image that adds `migration` (file name, SQL); returns the
    newer file's name and the environment that runs this image's migrations on it."""
    older = migrations_up_to(tmp_path, LATEST)
    newer = newer_image(tmp_path, scratch_database, *migration)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(newer))).code == 0
    env = migrator_env(database.url, MIGRATIONS_DIR=str(older), MIGRATOR_WAIT_TIMEOUT="5")
    return migration[0], env


def test_the_older_image_runs_on_a_ledger_ahead_while_its_schema_still_holds(
    database: Database, scratch_database: Database, tmp_path: Path
) -> None:
    newer, env = rolled_back(database, scratch_database, tmp_path, EXPAND)
    applied = ledger(database)
    assert len(applied) == NEXT
    for command in (["wait"], ["up"], ["verify"], ["status", "--json", "--exit-code"], ["plan"], ["status"]):
        outcome = run_inprocess(command, env)
        assert outcome.code == 0, (command, outcome.stderr)
        event = ahead_event(outcome)
        assert (event["ahead"], event["latest"]) == ([newer], LATEST), event
        assert "not drift" in str(event["msg"])
        if command == ["status", "--json", "--exit-code"]:
            document = json.loads(outcome.stdout)
            assert (document["version"], document["latest"], document["ahead"]) == (NEXT, LATEST, [NEXT])
            assert (document["missing"], document["pending"]) == ([], [])
            [entry] = [e for e in document["migrations"] if e["version"] == NEXT]
            assert (entry["state"], entry["file"]) == ("ahead", newer)
            schema = document["schema"]
            assert (schema["compared"], schema["drift"], schema["ahead"]) == (
                LATEST,
                [],
                [newer],
            )
        if command == ["status"]:
            assert "ledger ahead of this image by 1" in outcome.stdout.splitlines()[0]
            assert f"ahead     {newer}" in outcome.stdout
        if command == ["plan"]:
            assert outcome.stdout == ""
    assert ledger(database) == applied  # the older image's `up` applied and recorded nothing


def test_the_older_image_refuses_a_schema_a_newer_contract_step_took_what_it_needs_from(
    database: Database, scratch_database: Database, tmp_path: Path
) -> None:
    newer, env = rolled_back(database, scratch_database, tmp_path, CONTRACT)
    applied = ledger(database)
    for command in (["up"], ["wait"], ["verify"], ["status", "--exit-code"]):
        outcome = run_inprocess(command, env)
        assert outcome.code == 6, (command, outcome.stderr)
        assert "ledger_ahead" in outcome.names()
        assert outcome.events()[-1]["event"] == "schema_contracted"
        message = outcome.final_message
        assert "breaking: column messages.tool_name is missing (expected text)" in message, message
        assert "degraded: index messages_deleted_at_idx is missing" in message, message
        assert f"A newer migration ({newer}) removed or changed them" in message
        assert "this image cannot run on this schema" in message
        assert f"Roll forward to an image that ships {newer}" in message
    assert ledger(database) == applied


def test_an_index_a_newer_migration_dropped_leaves_the_older_image_running_degraded(
    database: Database, scratch_database: Database, tmp_path: Path
) -> None:
    newer, env = rolled_back(database, scratch_database, tmp_path, CONTRACT_INDEX)
    for command in ("wait", "up"):
        outcome = run_inprocess([command], env)
        assert outcome.code == 0, (command, outcome.stderr)
        [warning] = [e for e in outcome.events() if e["event"] == "schema_degraded"]
        assert warning["objects"] == ["messages_deleted_at_idx"]
        message = str(warning["msg"])
        # Repair from the older image would put back what the newer migration removed on purpose.
        assert f"a newer migration ({newer}) removed or changed them" in message
        assert "roll forward rather than run `kata-migrate repair`" in message
    verify = run_inprocess(["verify"], env)
    assert verify.code == 6 and "messages_deleted_at_idx" in verify.final_message, verify.stderr
