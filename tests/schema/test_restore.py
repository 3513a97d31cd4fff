"""From the expected and the live schema to the statements `repair` runs: no database for the
planning itself; real servers for what only PostgreSQL can judge (its quoting, that the statements
run and rebuild exactly what the snapshot describes)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import asyncpg
import pytest

from localpg.throwaway import PostgresServer
from schema.drift import BREAKING, DEGRADED, Drift, compare
from schema.model import Constraint, Index, Schema, Table
from schema.quoting import KEYWORDS, is_column, quote_ident
from schema.restore import Restoration, plan_restoration
from schema.restore_step import MAX_NAME_BYTES, aside_name, do_block
from schema.splitter import split_statements
from tests.conftest import Database
from tests.migrator.conftest import psql_script
from tests.schema.conftest import live_schema

HNSW = Index("messages", "messages_embedding_idx", "hnsw", ("embedding",), ("vector_cosine_ops",), False)
FORK_PAIR = Constraint(
    "contexts",
    "contexts_fork_pair",
    "check constraint",
    "CHECK (((parent_id IS NULL) OR (fork_version IS NOT NULL)))",
)
UNIQUE_VERSION = Constraint(
    "messages", "messages_context_version_unique", "unique constraint", "UNIQUE (context_id, version)"
)
PARENT_FK = Constraint(
    "contexts",
    "contexts_parent_id_fkey",
    "foreign key",
    "FOREIGN KEY (parent_id) REFERENCES contexts(id) ON DELETE SET NULL",
)
EXPECTED = Schema(
    tables=(Table("contexts", ()), Table("messages", ())),
    constraints=(FORK_PAIR, PARENT_FK, UNIQUE_VERSION),
    indexes=(HNSW,),
)


def plan(live: Schema, expected: Schema = EXPECTED) -> Restoration:
    return plan_restoration(expected, live, compare(expected, live))


def statements(restoration: Restoration) -> list[str]:
    return [s for step in restoration.steps for s in step.statements]


def builds(restoration: Restoration) -> list[str]:
    """The CREATE statements, without the move-aside of an INVALID leftover every build begins with."""
    return [s for s in statements(restoration) if s.startswith("CREATE")]


def test_a_dropped_index_is_built_concurrently_from_the_model() -> None:
    restoration = plan(replace(EXPECTED, indexes=()))
    assert [step.describe() for step in restoration.steps] == ["build index messages_embedding_idx"]
    move, drop, *created = statements(restoration)
    # A build the contention retry interrupted leaves an INVALID index: the retry moves it aside.
    assert "ALTER INDEX public.messages_embedding_idx RENAME TO messages_embedding_idx_invalid;" in move
    assert drop == "DROP INDEX CONCURRENTLY IF EXISTS public.messages_embedding_idx_invalid"
    assert created == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_embedding_idx ON public.messages "
        "USING hnsw (embedding vector_cosine_ops)"
    ]


def test_sort_order_and_storage_parameters_are_built_as_the_snapshot_holds_them() -> None:
    tuned = replace(HNSW, ordering=("",), reloptions=("m=8", "ef_construction=32"))
    sorted_index = Index(
        "messages",
        "messages_recent_idx",
        "btree",
        ("created_at", "id"),
        ("", ""),
        False,
        ordering=("DESC", "NULLS FIRST"),
    )
    expected = replace(EXPECTED, indexes=(tuned, sorted_index))
    assert builds(plan(replace(EXPECTED, indexes=()), expected)) == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_embedding_idx ON public.messages "
        "USING hnsw (embedding vector_cosine_ops) WITH (m=8, ef_construction=32)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_recent_idx ON public.messages "
        "USING btree (created_at DESC, id NULLS FIRST)",
    ]


def test_an_index_defined_differently_is_replaced_beside_itself_then_renamed() -> None:
    live = replace(EXPECTED, indexes=(replace(HNSW, reloptions=("m=8",)),))
    restoration = plan(live)
    assert [step.describe() for step in restoration.steps] == ["rebuild index messages_embedding_idx"]
    assert statements(restoration) == [
        "DROP INDEX CONCURRENTLY IF EXISTS public.messages_embedding_idx_repair",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_embedding_idx_repair ON public.messages "
        "USING hnsw (embedding vector_cosine_ops)",
        "DROP INDEX CONCURRENTLY IF EXISTS public.messages_embedding_idx",
        "ALTER INDEX public.messages_embedding_idx_repair RENAME TO messages_embedding_idx",
    ]


def test_keys_expressions_include_and_predicate_keep_their_sql_and_names_are_quoted() -> None:
    odd = Index(
        table="Odd Table",
        name="select",
        method="btree",
        keys=("lower(content)", '"Mixed Col"', "version"),
        opclasses=("text_ops", "int4_ops", "Weird Ops"),
        unique=True,
        predicate="(deleted_at IS NULL)",
        include=("tool_name",),
    )
    expected = Schema(tables=(Table("Odd Table", ()),), indexes=(odd,))
    live = replace(expected, indexes=())
    [sql] = builds(plan_restoration(expected, live, compare(expected, live), "My Schema"))
    assert sql == (
        'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "select" ON "My Schema"."Odd Table" USING btree '
        '((lower(content)) text_ops, "Mixed Col" int4_ops, version "Weird Ops") INCLUDE (tool_name) '
        "WHERE (deleted_at IS NULL)"
    )


def test_a_key_without_an_operator_class_keeps_its_place() -> None:
    bare = replace(HNSW, keys=("embedding", "(lower(content))"), opclasses=("vector_cosine_ops",))
    expected = replace(EXPECTED, indexes=(bare,))
    [sql] = builds(plan(replace(EXPECTED, indexes=()), expected))
    assert sql.endswith("USING hnsw (embedding vector_cosine_ops, ((lower(content))))")


def test_an_invalid_index_is_moved_aside_dropped_concurrently_and_rebuilt() -> None:
    restoration = plan(replace(EXPECTED, indexes=(replace(HNSW, valid=False),)))
    [step] = restoration.steps
    assert step.describe() == "rebuild index messages_embedding_idx"
    move, drop, create = step.statements
    assert "to_regclass(E'public.messages_embedding_idx') AND NOT indisvalid" in move
    assert "ALTER INDEX public.messages_embedding_idx RENAME TO messages_embedding_idx_invalid;" in move
    assert drop == "DROP INDEX CONCURRENTLY IF EXISTS public.messages_embedding_idx_invalid"
    assert create.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_embedding_idx ON")


def test_an_invalid_leftover_already_moved_aside_is_dropped_first() -> None:
    aside = replace(HNSW, name="messages_embedding_idx_invalid", valid=False)
    leftovers = (replace(HNSW, valid=False), aside)
    [step] = plan(replace(EXPECTED, indexes=leftovers)).steps
    assert step.statements[0] == "DROP INDEX CONCURRENTLY IF EXISTS public.messages_embedding_idx_invalid"
    assert "RENAME TO messages_embedding_idx_invalid" in step.statements[1]


def test_a_missing_check_is_added_not_valid_then_validated_in_its_own_statement() -> None:
    [step] = plan(replace(EXPECTED, constraints=(PARENT_FK, UNIQUE_VERSION))).steps
    assert step.describe() == "add check constraint contexts_fork_pair"
    assert step.statements == (
        "ALTER TABLE public.contexts DROP CONSTRAINT IF EXISTS contexts_fork_pair, ADD CONSTRAINT "
        "contexts_fork_pair CHECK (((parent_id IS NULL) OR (fork_version IS NOT NULL))) NOT VALID",
        "ALTER TABLE public.contexts VALIDATE CONSTRAINT contexts_fork_pair",
    )


def test_a_not_valid_constraint_is_only_validated_under_its_live_name() -> None:
    drizzle_named = replace(PARENT_FK, name="contexts_parent_id_contexts_id_fk", validated=False)
    [step] = plan(replace(EXPECTED, constraints=(FORK_PAIR, drizzle_named, UNIQUE_VERSION))).steps
    assert step.describe() == "validate foreign key contexts_parent_id_fkey"
    assert step.statements == (
        "ALTER TABLE public.contexts VALIDATE CONSTRAINT contexts_parent_id_contexts_id_fk",
    )


def test_a_missing_unique_constraint_gets_its_index_concurrently_then_attached() -> None:
    [step] = plan(replace(EXPECTED, constraints=(FORK_PAIR, PARENT_FK))).steps
    move, drop, build, attach = step.statements
    assert "RENAME TO messages_context_version_unique_invalid" in move and drop.startswith("DROP INDEX")
    assert build == (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS messages_context_version_unique "
        "ON public.messages (context_id, version)"
    )
    assert "conname = E'messages_context_version_unique'" in attach
    assert (
        "ALTER TABLE public.messages ADD CONSTRAINT messages_context_version_unique UNIQUE USING INDEX "
        "messages_context_version_unique;" in attach
    )


def test_a_unique_index_left_by_an_interrupted_build_is_moved_aside_or_reused() -> None:
    leftover = Index(
        "messages",
        "messages_context_version_unique",
        "btree",
        ("context_id", "version"),
        ("uuid_ops", "int8_ops"),
        True,
        valid=False,
    )
    live = replace(EXPECTED, constraints=(FORK_PAIR, PARENT_FK), indexes=(HNSW, leftover))
    [step] = plan(live).steps
    assert [s.split()[0] for s in step.statements] == ["DO", "DROP", "CREATE", "DO"]
    [step] = plan(replace(live, indexes=(HNSW, replace(leftover, valid=True)))).steps
    assert [s.split()[0] for s in step.statements] == ["DO"]  # built already: only attached


def test_steps_run_keys_before_foreign_keys_before_checks_before_indexes() -> None:
    restoration = plan(replace(EXPECTED, constraints=(), indexes=()))
    assert [step.kind for step in restoration.steps] == [
        "unique constraint",
        "foreign key",
        "check constraint",
        "index",
    ]


def test_breaking_drift_refuses_the_whole_plan() -> None:
    column = Drift("messages.model", "column", BREAKING, "is missing (expected text)")
    index = Drift("messages_embedding_idx", "index", DEGRADED, "is missing")
    restoration = plan_restoration(EXPECTED, replace(EXPECTED, indexes=()), [column, index])
    assert restoration.refused
    assert restoration.steps == ()
    assert restoration.breaking == (column,)


@pytest.mark.parametrize(
    ("live_indexes", "live_constraints", "holder"),
    [
        pytest.param(
            (Index("messages", "messages_embedding_idx", "btree", ("content",), ("text_ops",), False),),
            (FORK_PAIR, PARENT_FK, UNIQUE_VERSION),
            "index messages_embedding_idx (btree ON messages (content text_ops))",
            id="index-name-held-by-another-index",
        ),
        pytest.param(
            (HNSW,),
            (replace(FORK_PAIR, definition="CHECK ((fork_version > 0))"), PARENT_FK, UNIQUE_VERSION),
            "check constraint CHECK ((fork_version > 0))",
            id="check-name-held-by-another-check",
        ),
        pytest.param(
            (replace(HNSW, valid=False),),
            (FORK_PAIR, PARENT_FK, replace(UNIQUE_VERSION, name="messages_embedding_idx_invalid")),
            "the index of unique constraint messages_embedding_idx_invalid on messages",
            id="aside-name-held",
        ),
    ],
)
def test_a_name_taken_by_another_object_is_refused_naming_it(
    live_indexes: tuple[Index, ...], live_constraints: tuple[Constraint, ...], holder: str
) -> None:
    live = replace(EXPECTED, indexes=live_indexes, constraints=live_constraints)
    restoration = plan(live)
    assert restoration.steps == ()
    [conflict] = restoration.conflicts
    assert f"is taken by {holder}; rename or drop that object" in conflict
    assert "then run `kata-migrate repair` again" in conflict


def test_the_script_splits_into_exactly_the_planned_statements() -> None:
    restoration = plan(replace(EXPECTED, constraints=(), indexes=(replace(HNSW, valid=False),)))
    script = restoration.script()
    assert script.startswith("-- add unique constraint messages_context_version_unique\n")
    # Each step's comment line rides with its first statement, as psql would send it.
    found = [re.sub(r"\A(--[^\n]*\n)+", "", s.text) for s in split_statements(script)]
    assert found == statements(restoration)


def test_nothing_to_restore_is_an_empty_script() -> None:
    assert plan(EXPECTED) == Restoration()
    assert Restoration().script() == ""


def test_the_aside_name_stays_within_postgresqls_name_length() -> None:
    long = "i" * MAX_NAME_BYTES
    assert len(aside_name(long).encode()) == MAX_NAME_BYTES
    assert aside_name(long).endswith("_invalid")
    assert len(aside_name("é" * 40).encode()) <= MAX_NAME_BYTES  # never cut inside a character


def test_a_do_block_picks_a_dollar_quote_its_body_does_not_hold() -> None:
    body = " BEGIN ALTER INDEX a$kata_repair$b RENAME TO c; END "
    block = do_block(body)
    tag = block[len("DO ") : block.index(body)]
    assert tag.startswith("$") and tag.endswith("$") and tag not in body
    assert block == f"DO {tag}{body}{tag}"


@pytest.mark.parametrize("key", ["content", '"Mixed Col"', '"a""b"', '"x$1"'])
def test_a_column_key_needs_no_parentheses(key: str) -> None:
    assert is_column(key)


@pytest.mark.parametrize("key", ["lower(content)", "(a + b)", "user", 'content COLLATE "C"'])
def test_an_expression_key_does(key: str) -> None:
    assert not is_column(key)


@pytest.mark.parametrize("server_name", ["pg_server", "pg18_server"])
def test_names_are_quoted_as_the_servers_quote_ident_does(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    server: PostgresServer = request.getfixturevalue(server_name)
    names = ["messages", "Messages", "two words", 'say "hi"', "1st", "_ok", "a$b", "ünïcode", "", "json"]
    keywords = "SELECT string_agg(word, ' ') FROM pg_get_keywords() WHERE (catcode = 'U') = {}"
    reserved = server.psql(keywords.format("false")).split()
    unreserved = server.psql(keywords.format("true")).split()

    async def server_quoting(words: list[str]) -> list[str]:
        conn = await asyncpg.connect(server.url())
        try:
            rows = await conn.fetch("SELECT quote_ident(n) FROM unnest($1::text[]) n", words)
            return [str(row[0]) for row in rows]
        finally:
            await conn.close()

    # Every word this server reserves is quoted; a word only a newer server reserves (PostgreSQL 18's
    # `json` on 16) is quoted too, which any version reads back the same.
    assert set(reserved) <= KEYWORDS
    others = [n for n in [*names, *unreserved] if n not in KEYWORDS]
    assert [quote_ident(n) for n in [*reserved, *others]] == asyncio.run(server_quoting([*reserved, *others]))


ODD_SCHEMA = """
CREATE TABLE "Odd Parent" (id int PRIMARY KEY);
CREATE TABLE "Odd Table" (
    "Mixed Col" int NOT NULL,
    "select" text,
    parent int,
    deleted_at timestamptz
);
CREATE UNIQUE INDEX "Odd Idx" ON "Odd Table" (lower("select") text_pattern_ops, "Mixed Col") INCLUDE (parent)
    WHERE deleted_at IS NULL;
ALTER TABLE "Odd Table"
    ADD CONSTRAINT "order" CHECK ("Mixed Col" > 0),
    ADD CONSTRAINT "Uniq Key" UNIQUE ("Mixed Col", parent),
    ADD CONSTRAINT "Parent's FK" FOREIGN KEY (parent) REFERENCES "Odd Parent"(id);
ALTER TABLE "Odd Parent" ADD CONSTRAINT "Odd Parent's key" UNIQUE NULLS NOT DISTINCT (id);
INSERT INTO "Odd Parent" VALUES (1), (2);
INSERT INTO "Odd Table" VALUES (1, 'a', 1, NULL), (2, 'B', NULL, now());
"""
DROP_ODD = """
DROP INDEX "Odd Idx";
ALTER TABLE "Odd Table" DROP CONSTRAINT "order", DROP CONSTRAINT "Uniq Key", DROP CONSTRAINT "Parent's FK";
ALTER TABLE "Odd Parent" DROP CONSTRAINT "Odd Parent's key";
"""


def test_the_statements_rebuild_oddly_named_objects_exactly_as_the_snapshot_describes(
    database: Database,
) -> None:
    database.psql(ODD_SCHEMA)
    expected = live_schema(database.url)
    database.psql(DROP_ODD)
    live = live_schema(database.url)
    restoration = plan_restoration(expected, live, compare(expected, live))
    assert len(restoration.steps) == 5, restoration
    # psql runs each statement on its own, outside a transaction, as the migrator runs the script.
    psql_script(database, restoration.script())
    assert compare(expected, live_schema(database.url)) == ()
    # Run again from the top (a retry after a later statement failed): every statement is a no-op.
    psql_script(database, restoration.script())
    assert compare(expected, live_schema(database.url)) == ()
