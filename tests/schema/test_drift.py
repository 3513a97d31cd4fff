"""The live schema against the snapshots: equivalents pass, real differences are named and classed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schema.drift import BREAKING, DEGRADED, Drift, compare, explain, introduced_by, satisfied_version
from schema.model import Extension, Schema
from tests.conftest import Database
from tests.migrator.conftest import migrator_env, run_inprocess
from tests.schema.conftest import LATEST, live_schema


def drifts(expected: Schema, db: Database) -> set[tuple[str, str, str]]:
    return {(d.kind, d.object, d.class_) for d in compare(expected, live_schema(db.url))}


def test_our_migrated_database_has_no_drift_from_any_snapshot_up_to_its_version(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    live = live_schema(migrated.url)
    assert {v: compare(s, live) for v, s in snapshots.items()} == {v: () for v in snapshots}
    assert satisfied_version(snapshots, live) == LATEST


def test_the_applications_current_database_satisfies_snapshot_1_despite_other_names(
    app_current: Database, snapshots: dict[int, Schema]
) -> None:
    # drizzle's FK names, its extra messages_context_version_idx, policy_config as the last
    # column and a drizzle schema: all equivalent or not ours.
    live = live_schema(app_current.url)
    assert compare(snapshots[1], live) == ()
    assert satisfied_version(snapshots, live) == 1


def test_the_applications_current_database_lacks_only_what_our_later_migrations_add(
    app_current: Database, snapshots: dict[int, Schema]
) -> None:
    found = compare(snapshots[LATEST], live_schema(app_current.url))
    assert {d.class_ for d in found} == {DEGRADED}
    assert {(d.kind, d.object) for d in found} >= {
        ("index", "contexts_deleted_at_idx"),
        ("index", "messages_embedding_idx"),
        ("check constraint", "contexts_message_count_non_negative"),
    }
    assert {introduced_by(snapshots, d) for d in found} == set(range(2, LATEST + 1))


def test_an_orphaned_fork_is_data_not_drift(
    app_orphaned_fork: Database, snapshots: dict[int, Schema]
) -> None:
    orphans = "SELECT count(*) FROM contexts WHERE parent_id IS NULL AND fork_version = 2"
    assert app_orphaned_fork.psql(orphans) == "1"
    assert compare(snapshots[1], live_schema(app_orphaned_fork.url)) == ()


def test_the_released_v020_database_is_breaking_and_names_each_missing_column(
    app_v020: Database, snapshots: dict[int, Schema]
) -> None:
    found = compare(snapshots[1], live_schema(app_v020.url))
    assert {(d.kind, d.object, d.class_) for d in found} == {
        ("column", "contexts.policy_config", BREAKING),
        ("column", "messages.compacted_at", BREAKING),
        ("column", "messages.compacted_into_version", BREAKING),
    }
    assert {introduced_by(snapshots, d) for d in found} == {1}
    assert satisfied_version(snapshots, live_schema(app_v020.url)) == 0
    lines = explain(found, snapshots, {1: "0001_initial_schema.sql"})
    assert (
        "breaking: column contexts.policy_config is missing (expected jsonb) "
        "(created by 0001_initial_schema.sql)"
    ) in lines


def test_a_dropped_hnsw_index_is_degraded(migrated: Database, snapshots: dict[int, Schema]) -> None:
    migrated.psql("DROP INDEX messages_embedding_idx")
    assert drifts(snapshots[LATEST], migrated) == {("index", "messages_embedding_idx", DEGRADED)}


def test_a_dropped_check_constraint_is_degraded(migrated: Database, snapshots: dict[int, Schema]) -> None:
    migrated.psql("ALTER TABLE contexts DROP CONSTRAINT contexts_total_tokens_non_negative")
    assert drifts(snapshots[LATEST], migrated) == {
        ("check constraint", "contexts_total_tokens_non_negative", DEGRADED)
    }


def test_a_check_constraint_left_not_valid_is_degraded(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(
        "ALTER TABLE contexts DROP CONSTRAINT contexts_total_tokens_non_negative, "
        "ADD CONSTRAINT other_name CHECK (total_tokens >= 0) NOT VALID"
    )
    [drift] = compare(snapshots[LATEST], live_schema(migrated.url))
    assert (drift.object, drift.class_) == ("contexts_total_tokens_non_negative", DEGRADED)
    assert "VALIDATE CONSTRAINT other_name" in drift.problem


def test_a_dropped_foreign_key_and_unique_constraint_are_degraded(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(
        "ALTER TABLE messages DROP CONSTRAINT messages_context_id_fkey, "
        "DROP CONSTRAINT messages_context_version_unique"
    )
    assert drifts(snapshots[LATEST], migrated) == {
        ("foreign key", "messages_context_id_fkey", DEGRADED),
        ("unique constraint", "messages_context_version_unique", DEGRADED),
    }


def test_a_foreign_key_with_another_delete_action_is_a_missing_foreign_key(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(
        "ALTER TABLE messages DROP CONSTRAINT messages_context_id_fkey, "
        "ADD CONSTRAINT messages_context_id_fkey FOREIGN KEY (context_id) REFERENCES contexts (id)"
    )
    assert drifts(snapshots[LATEST], migrated) == {("foreign key", "messages_context_id_fkey", DEGRADED)}


def test_a_dropped_column_is_breaking(migrated: Database, snapshots: dict[int, Schema]) -> None:
    migrated.psql("ALTER TABLE messages DROP COLUMN compacted_at")
    assert drifts(snapshots[LATEST], migrated) == {("column", "messages.compacted_at", BREAKING)}


def test_a_column_of_another_type_nullability_or_default_is_breaking(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(
        "DROP INDEX messages_embedding_idx; "
        "ALTER TABLE messages ALTER COLUMN embedding TYPE vector(768), ALTER COLUMN model SET NOT NULL; "
        "ALTER TABLE contexts ALTER COLUMN id DROP DEFAULT"
    )
    found = {d.object: d for d in compare(snapshots[LATEST], live_schema(migrated.url))}
    assert found["messages.embedding"].problem == "has type vector(768), expected vector(1536)"
    assert found["messages.model"].problem == "nullability differs: expected nullable"
    assert found["contexts.id"].problem == "has default none, expected gen_random_uuid()"
    assert {d.class_ for o, d in found.items() if "." in o} == {BREAKING}


def test_a_missing_enum_label_is_breaking(migrated: Database, snapshots: dict[int, Schema]) -> None:
    # PostgreSQL cannot drop an enum label: replace the type by one without 'tool'.
    migrated.psql(
        "ALTER TYPE message_role RENAME TO message_role_old; "
        "CREATE TYPE message_role AS ENUM ('user', 'assistant', 'system'); "
        "ALTER TABLE messages ALTER COLUMN role TYPE message_role USING role::text::message_role; "
        "DROP TYPE message_role_old"
    )
    assert drifts(snapshots[LATEST], migrated) == {("enum label", "message_role.tool", BREAKING)}


def test_a_missing_table_enum_and_extension_are_breaking_once_each(
    database: Database, snapshots: dict[int, Schema]
) -> None:
    found = compare(snapshots[LATEST], live_schema(database.url))
    assert {(d.kind, d.object, d.class_) for d in found} == {
        ("extension", "vector", BREAKING),
        ("enum", "message_role", BREAKING),
        ("table", "contexts", BREAKING),
        ("table", "messages", BREAKING),
    }


def test_drift_serialises_as_the_probe_json_contract() -> None:
    drift = Drift("messages_embedding_idx", "index", DEGRADED, "is missing")
    assert drift.to_json() == {
        "object": "messages_embedding_idx",
        "kind": "index",
        "class": "degraded",
        "problem": "is missing",
    }
    assert str(drift) == "degraded: index messages_embedding_idx is missing"


def test_an_extension_older_than_the_snapshot_needs_is_breaking() -> None:
    expected = Schema(extensions=(Extension("vector", "0.5.0"),))
    assert compare(expected, Schema(extensions=(Extension("vector", "0.10.0"),))) == ()
    [drift] = compare(expected, Schema(extensions=(Extension("vector", "0.4.4"),)))
    assert (drift.object, drift.class_) == ("vector", BREAKING)
    assert drift.problem == (
        "is version 0.4.4, older than the 0.5.0 the schema needs: "
        "as its owner run `ALTER EXTENSION vector UPDATE;` in this database"
    )


def test_a_missing_extension_says_how_to_install_it_and_names_no_migration_file(
    snapshots: dict[int, Schema],
) -> None:
    # The preflight creates pgvector; 0001 only uses it: "created by 0001_..." sent operators to
    # a file that holds no CREATE EXTENSION.
    found = compare(snapshots[LATEST], replace(snapshots[LATEST], extensions=()))
    files = {v: f"{v:04d}_x.sql" for v in snapshots}
    [line] = explain(found, snapshots, files)
    assert line == (
        "breaking: extension vector is not installed (need 0.5.0 or later; no migration creates it): "
        "have a superuser (or the database owner, where the extension is trusted) run "
        "`CREATE EXTENSION IF NOT EXISTS vector;` in this database"
    )


RECREATE_ROLE = (
    "ALTER TYPE message_role RENAME TO message_role_old; "
    "CREATE TYPE message_role AS ENUM ({labels}); "
    "ALTER TABLE messages ALTER COLUMN role TYPE message_role USING role::text::message_role; "
    "DROP TYPE message_role_old"
)


def test_enum_labels_in_another_order_are_breaking(migrated: Database, snapshots: dict[int, Schema]) -> None:
    # The label order is the type's sort order: ORDER BY role and role < 'system' change meaning.
    migrated.psql(RECREATE_ROLE.format(labels="'assistant', 'user', 'system', 'tool'"))
    [drift] = compare(snapshots[LATEST], live_schema(migrated.url))
    assert (drift.kind, drift.object, drift.class_) == ("enum", "message_role", BREAKING)
    assert drift.problem.startswith(
        "sorts its labels as assistant, user, system, tool, expected user, assistant, system, tool"
    )


def test_a_label_a_later_migration_added_anywhere_is_no_reordering(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql("ALTER TYPE message_role ADD VALUE 'developer' BEFORE 'assistant'")
    assert compare(snapshots[LATEST], live_schema(migrated.url)) == ()


HNSW = "CREATE INDEX messages_embedding_idx ON messages USING hnsw (embedding vector_cosine_ops)"


def test_an_hnsw_index_with_other_parameters_is_degraded_and_shows_both(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(f"DROP INDEX messages_embedding_idx; {HNSW} WITH (m = 32, ef_construction = 128)")
    [drift] = compare(snapshots[LATEST], live_schema(migrated.url))
    assert (drift.kind, drift.object, drift.class_) == ("index", "messages_embedding_idx", DEGRADED)
    assert drift.problem == (
        "is defined differently: hnsw ON messages (embedding vector_cosine_ops) "
        "WITH (ef_construction=128, m=32), expected hnsw ON messages (embedding vector_cosine_ops)"
    )


@pytest.mark.parametrize("ordering", ["DESC", "NULLS FIRST", "DESC NULLS LAST"])
def test_an_index_with_another_sort_order_is_degraded(
    migrated: Database, snapshots: dict[int, Schema], ordering: str
) -> None:
    migrated.psql(
        "DROP INDEX contexts_deleted_at_idx; "
        f"CREATE INDEX contexts_deleted_at_idx ON contexts (deleted_at {ordering})"
    )
    [drift] = compare(snapshots[LATEST], live_schema(migrated.url))
    assert (drift.kind, drift.object, drift.class_) == ("index", "contexts_deleted_at_idx", DEGRADED)
    assert drift.problem == (
        f"is defined differently: btree ON contexts (deleted_at timestamptz_ops {ordering}), "
        "expected btree ON contexts (deleted_at timestamptz_ops)"
    )


def test_equivalent_spellings_of_defaults_checks_and_index_parameters_are_no_drift(
    migrated: Database, snapshots: dict[int, Schema]
) -> None:
    migrated.psql(
        "ALTER TABLE contexts ALTER COLUMN created_at SET DEFAULT CURRENT_TIMESTAMP, "
        "ALTER COLUMN updated_at SET DEFAULT transaction_timestamp(), "
        "DROP CONSTRAINT contexts_total_tokens_non_negative, "
        "ADD CONSTRAINT contexts_total_tokens_non_negative CHECK (0 <= total_tokens); "
        "ALTER TABLE messages DROP CONSTRAINT messages_token_count_non_negative, "
        "ADD CONSTRAINT messages_token_count_non_negative CHECK (token_count IS NULL OR 0 <= token_count); "
        f"DROP INDEX messages_embedding_idx; {HNSW} WITH (m = 16, ef_construction = 64)"
    )
    live = live_schema(migrated.url)
    assert live.table("contexts").column("created_at").default == "CURRENT_TIMESTAMP"  # type: ignore[union-attr]
    assert compare(snapshots[LATEST], live) == ()
    outcome = run_inprocess(["verify"], migrator_env(migrated.url))
    assert outcome.code == 0, outcome.stderr
