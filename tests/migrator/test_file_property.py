"""For any bytes in a migration file, `up` either applies the whole file and records it, or
records nothing and leaves no object behind (issue 10), never hanging and never exiting 1 (issue
19: client streams, psql meta-commands, lexing settings, quotes inside quotes): the schema is
compared with pg_dump."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from schema.splitter import split_statements
from tests.conftest import Database
from tests.migrator.conftest import ledger, migrator_env, run_inprocess

BASE = b"SELECT 1;\n"
TABLES = ("a", "b", "c")
GOOD = (
    "CREATE TABLE {t}(x int)",
    "CREATE INDEX ON {t}(x)",
    "INSERT INTO {t} VALUES (1)",
    "CREATE VIEW v_{t} AS SELECT 1 AS one",
    "COMMENT ON TABLE {t} IS 'it; is'",
    "DO $$ BEGIN CREATE TABLE d_{t}(y int); END $$",
    "SELECT $q$;$q$",
    "CREATE FUNCTION f_{t}(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 END; "
    "END",
    "CREATE RULE r_{t} AS ON INSERT TO {t} DO ALSO (SELECT 1; SELECT 2)",
)
# What a migration may not do, spelled out or hidden from the text.
TRANSACTION = ("COMMIT", "END", "ROLLBACK", "BEGIN", "SAVEPOINT s")
SESSION = (
    "RESET ALL",
    "SELECT set_config('lock_timeout', '0', false)",
    "SELECT pg_advisory_unlock_all()",
    "DO $$ BEGIN EXECUTE 'RESET ' || 'ALL'; END $$",
)
# Bad syntax and failures at run time.
BAD = ("CREATE TABLE {t}(", "SELEC 1", "SELECT 1/0")
BREAKS = ("\n", "\r", "\r\n", " ")
COMMENTS = ("-- c;", "/* c; */", "-- ", "/* open")


def statements(templates: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda s, t: s.format(t=t).encode(), st.sampled_from(templates), st.sampled_from(TABLES))


SEPARATOR = st.sampled_from([";" + b for b in BREAKS] + [";"]).map(str.encode)
NOISE = st.one_of(
    st.sampled_from([*BREAKS, *COMMENTS]).map(str.encode),
    st.sampled_from([b"\xff", b"\xc3", b"'", b"$$", b"(", b")", b"\x00"]),
    st.binary(max_size=6),
)
# Mostly whole statements with a separator, so that COMMIT or RESET ALL stands as a statement of
# its own; sometimes noise, which may join, break or comment out its neighbours.
PIECE = st.one_of(
    *[st.tuples(statements(k), SEPARATOR).map(b"".join) for k in (GOOD, GOOD, TRANSACTION, SESSION, BAD)],
    NOISE,
)
# Half the files start with a table, so that whatever follows has something to half-apply.
FIRST_TABLE = st.tuples(statements(("CREATE TABLE {t}(x int)",)), SEPARATOR).map(b"".join)
FILES = st.one_of(
    st.lists(PIECE, min_size=1, max_size=8).map(b"".join),
    st.tuples(FIRST_TABLE, st.lists(PIECE, min_size=1, max_size=7).map(b"".join)).map(b"".join),
)


# Issue 19: what a client stream, a psql meta-command, a lexing setting or a quote inside a quote
# does to a file (the COPY would have hung `up`, the setting let a COMMIT hidden in a string run).
CLIENT_STREAMS = (
    "COPY {t} FROM stdin",
    "copy /* rows */ {t} (x) FROM\nSTDIN WITH (FORMAT csv)",
    "COPY (SELECT 1) TO STDOUT",
    "COPY {t} TO stdout",
)
META_LINES = (
    "\\set ON_ERROR_STOP on\n",
    "\\i other.sql\n",
    "\\copy {t} FROM 'x.csv'\n",
    "SELECT 1 \\gexec\n",
    "1\t2\n\\.\n",
)
HIDDEN_COMMIT = b"SELECT 'a\\'';COMMIT;SELECT '';\n"
DYNAMIC_SCS = b"DO $$ BEGIN EXECUTE 'SET standard_' || 'conforming_strings = off'; END $$"
LEXING = (
    "SET standard_conforming_strings = off",
    "SET LOCAL standard_conforming_strings TO off",
    "RESET standard_conforming_strings",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SET client_encoding = 'LATIN1'",
    "SET NAMES 'SJIS'",
    DYNAMIC_SCS.decode(),
    HIDDEN_COMMIT.decode().rstrip(";\n"),
)
NESTED_QUOTES = (
    "SELECT E'it\\'s; COMMIT; --'",
    "SELECT E'a\\\\' AS b",
    "SELECT '$$;' AS d, '--;' AS c",
    "SELECT $$ it's; COMMIT; -- $$",
    "SELECT $a$ $$ ; $a$",
    "COMMENT ON TABLE {t} IS E'a\\\\b; -- c'",
    "SELECT 'x' /* $$ ' ; */",
    'SELECT "we;ird" FROM (SELECT 1 AS "we;ird") s',
)
STREAM_SETTING_QUOTE_PIECE = st.one_of(
    *[
        st.tuples(statements(k), SEPARATOR).map(b"".join)
        for k in (GOOD, NESTED_QUOTES, NESTED_QUOTES, CLIENT_STREAMS, LEXING, TRANSACTION)
    ],
    statements(META_LINES),
    NOISE,
)
STREAM_SETTING_QUOTE_FILES = st.tuples(
    FIRST_TABLE, st.lists(STREAM_SETTING_QUOTE_PIECE, min_size=1, max_size=6).map(b"".join)
).map(b"".join)


@pytest.fixture
def template(database: Database, tmp_path: Path) -> Iterator[Database]:
    """A database the migrator has set up (pgvector, the ledger, version 1), copied per example."""
    directory = tmp_path / "base"
    directory.mkdir()
    (directory / "0001_base.sql").write_bytes(BASE)
    assert run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory))).code == 0
    yield database


def copy_of(template: Database) -> Database:
    name = template.server.create_database("p")
    template.server.drop_database(name)
    template.server.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"')
    return Database(template.server, name)


async def execute_whole(url: str, sql: str) -> bool:
    """PostgreSQL's own reading of the file: one query, one implicit transaction."""
    if not split_statements(sql):
        return True  # only comments and semicolons: asyncpg cannot read an empty query's answer
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=FILES)
# The reproductions, always run besides what hypothesis draws.
@example(content=b"CREATE TABLE a(x int); COMMIT; CREATE TABLE b(x int); CREATE TABLE c(;")
@example(content=b"BEGIN; CREATE TABLE a(x int); COMMIT; CREATE TABLE b(;")
@example(content=b"CREATE TABLE r1(x int); ROLLBACK; CREATE TABLE r2(x int);")
@example(content=b"-- c\rCREATE TABLE t(x int);\r")
@example(content=b"SELECT pg_advisory_unlock_all(); CREATE TABLE a3(x int);")
@example(content=b"CREATE TABLE a(x int); RESET ALL; CREATE TABLE b(x int);")
@example(content=b"CREATE TABLE a(x int);\n/* open")  # found by this test: PostgreSQL rejects the file
def test_any_file_is_applied_whole_and_recorded_or_leaves_nothing(
    template: Database, tmp_path: Path, content: bytes
) -> None:
    assert_applied_whole_or_leaves_nothing(template, tmp_path, content)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=STREAM_SETTING_QUOTE_FILES)
# Issue 19's reproductions: a hung COPY, a meta-command, a COMMIT hidden by a setting (in the text,
# then built at run time), and quotes inside quotes.
@example(content=b"CREATE TABLE a(x int);\nCOPY a FROM stdin;\n1\n\\.\n")
@example(content=b"\\set ON_ERROR_STOP on\nCREATE TABLE a(x int);\n")
@example(content=b"CREATE TABLE a(x int);\nSET standard_conforming_strings = off;\n" + HIDDEN_COMMIT)
@example(content=b"CREATE TABLE a(x int);\n" + DYNAMIC_SCS + b";\n" + HIDDEN_COMMIT)
@example(content=b"CREATE TABLE a(x int);\nSELECT E'\\';COMMIT;--';\nSELECT '$$;--', $q$ ' $q$;\n")
def test_any_file_with_client_streams_lexing_settings_or_nested_quotes_is_applied_whole_or_leaves_nothing(
    template: Database, tmp_path: Path, content: bytes
) -> None:
    assert_applied_whole_or_leaves_nothing(template, tmp_path, content)


def assert_applied_whole_or_leaves_nothing(template: Database, tmp_path: Path, content: bytes) -> None:
    """`up` with the file as 0002 after a base: exit 0 with the file recorded and the schema
    PostgreSQL makes of it, or exit 2 or 5 with nothing recorded and the schema unchanged. A hang
    fails on the suite's timeout."""
    note(f"file: {content!r}")
    directory = tmp_path / "migrations"
    directory.mkdir(exist_ok=True)
    (directory / "0001_base.sql").write_bytes(BASE)
    (directory / "0002_fuzz.sql").write_bytes(content)
    target = copy_of(template)
    try:
        before = target.server.schema_dump(target.name)
        outcome = run_inprocess(["up"], migrator_env(target.url, MIGRATIONS_DIR=str(directory)))
        after = target.server.schema_dump(target.name)
        recorded = ledger(target) == ["1|applied", "2|applied"]
        if not recorded:
            assert outcome.code in (2, 5), outcome.stderr
            assert after == before, f"{content!r} left objects behind: {outcome.final_message}"
            return
        assert outcome.code == 0
        reference = copy_of(template)
        try:
            assert asyncio.run(execute_whole(reference.url, content.decode().removeprefix("\ufeff"))), content
            assert after == reference.server.schema_dump(reference.name), content
        finally:
            reference.server.drop_database(reference.name)
    finally:
        target.server.drop_database(target.name)
