"""The schema the migrations build, read back from the catalogs, and the HNSW retry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.migrator.conftest import FINAL_INDEXES, MIGRATIONS, migrator_env, run_inprocess, secondary_indexes

COLUMNS = {
    "contexts": [
        ("id", "uuid", "NO", "gen_random_uuid()"),
        ("name", "text", "YES", None),
        ("created_at", "timestamptz", "NO", "now()"),
        ("updated_at", "timestamptz", "NO", "now()"),
        ("message_count", "int4", "NO", "0"),
        ("total_tokens", "int4", "NO", "0"),
        ("latest_version", "int8", "NO", "0"),
        ("parent_id", "uuid", "YES", None),
        ("fork_version", "int8", "YES", None),
        ("policy_config", "jsonb", "YES", None),
        ("deleted_at", "timestamptz", "YES", None),
    ],
    "messages": [
        ("id", "uuid", "NO", "gen_random_uuid()"),
        ("context_id", "uuid", "NO", None),
        ("version", "int8", "NO", None),
        ("created_at", "timestamptz", "NO", "now()"),
        ("role", "message_role", "NO", None),
        ("content", "text", "NO", None),
        ("tool_call_id", "text", "YES", None),
        ("tool_name", "text", "YES", None),
        ("token_count", "int4", "YES", None),
        ("model", "text", "YES", None),
        ("deleted_at", "timestamptz", "YES", None),
        ("embedding", "vector", "YES", None),
        ("compacted_at", "timestamptz", "YES", None),
        ("compacted_into_version", "int8", "YES", None),
    ],
}


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_columns_types_nullability_and_defaults(migrated: Database, table: str) -> None:
    rows = migrated.psql(
        "SELECT column_name, udt_name, is_nullable, coalesce(column_default, '-') "
        "FROM information_schema.columns "
        f"WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
    )
    found = [tuple(line.split("|")) for line in rows.splitlines()]
    assert found == [(c, t, n, d or "-") for c, t, n, d in COLUMNS[table]]


def test_embedding_is_vector_1536_and_role_enum_is_ordered(migrated: Database) -> None:
    assert (
        migrated.psql(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'messages'::regclass AND attname = 'embedding'"
        )
        == "vector(1536)"
    )
    assert (
        migrated.psql(
            "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum "
            "WHERE enumtypid = 'message_role'::regtype"
        )
        == "user,assistant,system,tool"
    )


def test_foreign_keys_and_their_delete_rules(migrated: Database) -> None:
    rows = migrated.psql(
        "SELECT conrelid::regclass || '.' || a.attname || '->' || confrelid::regclass "
        "|| ':' || confdeltype::text "
        "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE contype = 'f' ORDER BY 1"
    )
    assert rows.splitlines() == ["contexts.parent_id->contexts:n", "messages.context_id->contexts:c"]


def test_unique_check_and_primary_key_constraints(migrated: Database) -> None:
    rows = migrated.psql(
        "SELECT conname || ':' || contype::text || ':' || pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid IN ('contexts'::regclass, 'messages'::regclass) AND contype IN ('u', 'c', 'p') "
        "ORDER BY 1"
    )
    assert rows.splitlines() == [
        "contexts_fork_pair:c:CHECK (((parent_id IS NULL) OR (fork_version IS NOT NULL)))",
        "contexts_latest_version_non_negative:c:CHECK ((latest_version >= 0))",
        "contexts_message_count_non_negative:c:CHECK ((message_count >= 0))",
        "contexts_pkey:p:PRIMARY KEY (id)",
        "contexts_total_tokens_non_negative:c:CHECK ((total_tokens >= 0))",
        "messages_context_version_unique:u:UNIQUE (context_id, version)",
        "messages_pkey:p:PRIMARY KEY (id)",
        "messages_token_count_non_negative:c:CHECK (((token_count IS NULL) OR (token_count >= 0)))",
    ]


def test_indexes_including_a_valid_hnsw_cosine_index(migrated: Database) -> None:
    assert secondary_indexes(migrated) == FINAL_INDEXES


def test_constraints_reject_bad_rows(migrated: Database) -> None:
    for sql in (
        "INSERT INTO contexts (message_count) VALUES (-1)",
        # A fork (a parent) without the version it forked at.
        "WITH parent AS (INSERT INTO contexts DEFAULT VALUES RETURNING id) "
        "INSERT INTO contexts (parent_id) SELECT id FROM parent",
        "INSERT INTO messages (context_id, version, role, content) "
        "VALUES (gen_random_uuid(), 1, 'user', 'x')",
    ):
        with pytest.raises(subprocess.CalledProcessError) as failed:
            migrated.psql(sql)
        assert "violates" in failed.value.stderr


def test_invalid_index_left_by_a_failed_concurrent_build_is_dropped_and_rebuilt(
    database: Database, tmp_path: Path
) -> None:
    first_four = tmp_path / "first_four"
    first_four.mkdir()
    for path in sorted(MIGRATIONS.glob("000[1-4]_*.sql")):
        (first_four / path.name).write_bytes(path.read_bytes())
    assert run_inprocess(["up", "--migrations", str(first_four)], migrator_env(database.url)).code == 0
    database.psql("INSERT INTO contexts (id) VALUES ('00000000-0000-0000-0000-000000000001')")
    database.psql(
        "INSERT INTO messages (context_id, version, role, content) "
        "SELECT '00000000-0000-0000-0000-000000000001', v, 'user', 'x' FROM generate_series(1, 2) v"
    )
    # A concurrent build that fails leaves an INVALID index under the name 0005 wants.
    with pytest.raises(subprocess.CalledProcessError) as failed:
        database.psql("CREATE UNIQUE INDEX CONCURRENTLY messages_embedding_idx ON messages (context_id)")
    assert "could not create unique index" in failed.value.stderr
    assert (
        database.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'messages_embedding_idx'::regclass")
        == "f"
    )
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    assert any("dropping invalid index" in str(e.get("msg")) for e in outcome.events())
    assert database.psql(
        "SELECT indisvalid || ' ' || pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indexrelid = 'messages_embedding_idx'::regclass"
    ).startswith("true CREATE INDEX messages_embedding_idx ON public.messages USING hnsw")
