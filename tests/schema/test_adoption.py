"""The application's own databases through status -> baseline -> up -> verify, as an operator
adopting them would run it: the checked baseline accepts what it can prove and refuses the rest."""

from __future__ import annotations

import json

from tests.conftest import Database
from tests.fixtures.drizzle_app import DRIZZLE
from tests.migrator.conftest import ledger, migrator_env, run_inprocess
from tests.schema.conftest import LATEST

ALL_APPLIED = [f"{v}|applied" for v in range(2, LATEST + 1)]


def status_json(db: Database) -> dict[str, object]:
    outcome = run_inprocess(["status", "--json"], migrator_env(db.url))
    assert outcome.code == 0, outcome.stderr
    document: dict[str, object] = json.loads(outcome.stdout)
    return document


def test_status_names_the_current_drizzle_database_version_1_and_drizzles_ledger(
    app_current: Database,
) -> None:
    text = run_inprocess(["status"], migrator_env(app_current.url)).stdout
    assert "live schema: tables contexts, messages exist but no migration is recorded" in text
    assert "drizzle's ledger drizzle.__drizzle_migrations records 3 migration(s)" in text
    assert "run `kata-migrate baseline 1`" in text
    schema = status_json(app_current)["schema"]
    assert isinstance(schema, dict)
    assert schema["unrecorded"]["satisfies"] == 1
    assert schema["unrecorded"]["drizzle"] == {"ledger": "drizzle.__drizzle_migrations", "migrations": 3}


def test_the_current_drizzle_database_goes_through_baseline_up_and_verify(app_current: Database) -> None:
    env = migrator_env(app_current.url)
    refused = run_inprocess(["up"], env)
    assert refused.code == 6 and "run `kata-migrate baseline 1`" in refused.final_message
    assert ledger(app_current) == []
    assert run_inprocess(["baseline", "1"], env).code == 0
    assert ledger(app_current) == ["1|baseline"]
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert ledger(app_current) == ["1|baseline", *ALL_APPLIED]
    assert run_inprocess(["verify"], env).code == 0


def test_a_drizzle_database_holding_an_orphaned_fork_migrates(app_orphaned_fork: Database) -> None:
    env = migrator_env(app_orphaned_fork.url)
    assert status_json(app_orphaned_fork)["schema"]["unrecorded"]["satisfies"] == 1  # type: ignore[index]
    assert run_inprocess(["baseline", "1"], env).code == 0
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr  # 0004's fork rule lets an orphaned fork keep its version
    assert run_inprocess(["verify"], env).code == 0
    assert (
        app_orphaned_fork.psql("SELECT count(*) FROM contexts WHERE parent_id IS NULL AND fork_version = 2")
        == "1"
    )


def test_the_released_v020_database_is_refused_a_baseline_naming_what_it_lacks(app_v020: Database) -> None:
    env = migrator_env(app_v020.url)
    status = run_inprocess(["status"], env).stdout
    assert "it satisfies the snapshot of no version" in status
    assert "lacks breaking: column contexts.policy_config is missing (expected jsonb)" in status
    refused = run_inprocess(["baseline", "1"], env)
    assert refused.code == 6, refused.stderr
    message = refused.final_message
    assert "baseline 1 refused, nothing was recorded" in message
    for column in ("contexts.policy_config", "messages.compacted_at", "messages.compacted_into_version"):
        assert f"column {column} is missing" in message
    assert "(created by 0001_initial_schema.sql)" in message
    assert ledger(app_v020) == []
    assert run_inprocess(["up"], env).code == 6
    assert ledger(app_v020) == []


def test_the_v020_database_once_the_application_adds_its_0002_is_adopted(app_v020: Database) -> None:
    app_v020.psql((DRIZZLE / "0002_policy_compaction.sql").read_text())
    env = migrator_env(app_v020.url)
    assert run_inprocess(["baseline", "1"], env).code == 0
    assert run_inprocess(["up"], env).code == 0
    assert run_inprocess(["verify"], env).code == 0


def test_a_baseline_beyond_what_the_schema_holds_names_the_version_it_does_satisfy(
    app_current: Database,
) -> None:
    refused = run_inprocess(["baseline", str(LATEST)], migrator_env(app_current.url))
    assert refused.code == 6
    assert "index messages_embedding_idx is missing" in refused.final_message
    assert "it does satisfy version 1: run `kata-migrate baseline 1`" in refused.final_message
    assert ledger(app_current) == []


def test_up_on_the_released_v020_database_refuses_naming_what_it_lacks_as_status_does(
    app_v020: Database,
) -> None:
    refused = run_inprocess(["up"], migrator_env(app_v020.url))
    assert refused.code == 6, refused.stderr
    message = refused.final_message
    assert "nothing was run: it satisfies no version's snapshot" in message
    assert "column contexts.policy_config is missing (expected jsonb)" in message
    assert ledger(app_v020) == []
