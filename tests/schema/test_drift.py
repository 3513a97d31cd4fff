"""The live schema against the snapshots: equivalents pass, real differences are named and classed."""

from __future__ import annotations

from schema.drift import BREAKING, DEGRADED, Drift, compare, explain, introduced_by, satisfied_version
from schema.model import Extension, Schema
from tests.conftest import Database
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
    assert drift.problem == "is version 0.4.4, older than the 0.5.0 the schema needs"
