"""What a migration file may contain: refused before anything runs, or caught by the session guard
before anything commits (issue 10, items 3-6), and SQL bodies applied as written (issue 13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.migrator.conftest import ledger, migrator_env, run_inprocess, table_exists

Files = Callable[[dict[str, str | bytes]], Path]
NO_TX = "-- migrate: no-transaction\n"


def up(database: Database, directory: Path) -> tuple[int, str, list[str]]:
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    return outcome.code, outcome.final_message, outcome.names()


@pytest.mark.parametrize(
    ("sql", "line", "word"),
    [
        ("CREATE TABLE a(x int);\nCOMMIT;\nCREATE TABLE b(x int);\nCREATE TABLE c(;\n", 2, "COMMIT"),
        ("BEGIN;\nCREATE TABLE a(x int);\nCOMMIT;\n", 1, "BEGIN"),
        ("CREATE TABLE a(x int);\nROLLBACK;\nCREATE TABLE b(x int);\n", 2, "ROLLBACK"),
        ("CREATE TABLE a(x int);\nSAVEPOINT s;\n", 2, "SAVEPOINT"),
        ("CREATE TABLE a(x int);\nSTART TRANSACTION;\n", 2, "START TRANSACTION"),
        ("CREATE TABLE a(x int);\nPREPARE TRANSACTION 'x';\n", 2, "PREPARE TRANSACTION"),
        ("SELECT pg_advisory_unlock_all();\nSELECT pg_sleep(3);\nCREATE TABLE a(x int);\n", 1, "pg_advisory"),
        ("CREATE TABLE a(x int);\n  SET ROLE postgres;\n", 2, "SET ROLE"),
        ("CREATE TABLE a(x int);\nRESET ALL;\n", 2, "RESET ALL"),
        ("CREATE TABLE a(x int);\nSET SESSION AUTHORIZATION DEFAULT;\n", 2, "SET SESSION AUTHORIZATION"),
        ("CREATE TABLE a(x int);\nDISCARD ALL;\n", 2, "DISCARD ALL"),
        (NO_TX + "CREATE TABLE a(x int);\r\nBEGIN;\r\n", 3, "BEGIN"),
        ("CREATE TABLE a(x int);\n\x00CREATE TABLE b(x int);\n", 2, "NUL character"),
        # Issue 19: a client stream the migrator does not have (COPY FROM STDIN waited forever).
        ("CREATE TABLE a(x int);\nCOPY a FROM stdin;\n1\n2\n\\.\n", 2, "COPY a FROM stdin"),
        (
            "CREATE TABLE a(x int);\ncopy /* rows */ a (x)\n FROM -- the client\n Stdin (FORMAT csv);\n",
            2,
            "copy",
        ),
        (
            "CREATE TABLE a(x int);\nCOPY (SELECT x FROM a) TO STDOUT;\n",
            2,
            "COPY (SELECT x FROM a) TO STDOUT",
        ),
        ("CREATE TABLE a(x int);\nCOPY BINARY a TO stdout;\n", 2, "COPY BINARY"),
        # psql meta-commands: only psql understands them.
        ("CREATE TABLE a(x int);\n\\i other.sql\nCREATE TABLE b(x int);\n", 2, "\\i other.sql"),
        ("\\set ON_ERROR_STOP on\nCREATE TABLE a(x int);\n", 1, "\\set ON_ERROR_STOP on"),
        ("CREATE TABLE a(x int);\n\\copy a FROM 'rows.csv'\n", 2, "\\copy"),
        ("CREATE TABLE a(x int);\nSELECT 'CREATE TABLE b(x int)' \\gexec\n", 2, "\\gexec"),
        # Settings that change where the server sees a string (and so a statement) end.
        (
            "CREATE TABLE a(x int);\nSET standard_conforming_strings = off;\n",
            2,
            "standard_conforming_strings",
        ),
        ("CREATE TABLE a(x int);\nset local STANDARD_CONFORMING_STRINGS to off;\n", 2, "STANDARD_CONFORMING"),
        ("CREATE TABLE a(x int);\nSET SESSION standard_conforming_strings = 0;\n", 2, "SET SESSION"),
        ("CREATE TABLE a(x int);\nRESET standard_conforming_strings;\n", 2, "RESET standard_conforming"),
        (
            "CREATE TABLE a(x int);\nSELECT set_config('standard_conforming_strings', 'off', false);\n",
            2,
            "set_config",
        ),
        ("CREATE TABLE a(x int);\nSET client_encoding = 'SJIS';\n", 2, "client_encoding"),
        ("CREATE TABLE a(x int);\nSET NAMES 'LATIN1';\n", 2, "SET NAMES"),
    ],
)
def test_a_statement_that_would_break_the_migrators_session_is_refused_before_anything_runs(
    database: Database, write_migrations: Files, sql: str, line: int, word: str
) -> None:
    code, message, names = up(database, write_migrations({"0001_bad.sql": sql}))
    assert code == 2, message
    assert f"migration 0001_bad.sql line {line}, column" in message
    assert word in message and "nothing was run" in message
    assert "migration_started" not in names
    assert not table_exists(database, "a")
    assert ledger(database) == []


def test_plan_refuses_the_same_file_it_would_not_run(database: Database, write_migrations: Files) -> None:
    directory = write_migrations({"0001_bad.sql": "CREATE TABLE a(x int);\nCOMMIT;\n"})
    outcome = run_inprocess(["plan"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 2
    assert "line 2, column 1" in outcome.final_message
    assert outcome.stdout == ""


@pytest.mark.parametrize("header", ["", NO_TX])
@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("DO $$ BEGIN EXECUTE 'RESET ' || 'ALL'; END $$", "changed lock_timeout or statement_timeout"),
        ("SELECT set_config('statement_timeout', '0', false)", "changed lock_timeout or statement_timeout"),
        ("DO $$ BEGIN EXECUTE 'SELECT pg_advisory_' || 'unlock_all()'; END $$", "released the lock"),
        ("SELECT set_config('role', 'guard_other', false)", "changed the role"),
        (
            "DO $$ BEGIN EXECUTE 'SET standard_' || 'conforming_strings = off'; END $$",
            "changed standard_conforming_strings or client_encoding",
        ),
        (
            "DO $$ BEGIN EXECUTE 'SET client_' || 'encoding = ''LATIN1'''; END $$",
            "changed standard_conforming_strings or client_encoding",
        ),
    ],
)
def test_a_session_change_the_text_hides_is_caught_by_the_guard_before_commit(
    database: Database, write_migrations: Files, header: str, body: str, problem: str
) -> None:
    database.psql("DO $$ BEGIN CREATE ROLE guard_other; EXCEPTION WHEN duplicate_object THEN END $$")
    sql = f"{header}CREATE TABLE before_it(x int);\n{body};\nCREATE TABLE after_it(x int);\n"
    code, message, names = up(database, write_migrations({"0001_sneaky.sql": sql}))
    assert code == 5, message
    # Releasing an advisory lock does not roll back: the run says it ended without it.
    unlocked = problem == "released the lock"
    assert ("lock_lost" in names) == unlocked and ("lock_released" in names) != unlocked
    line = 3 if header else 2
    assert f"0001_sneaky.sql failed at line {line}, column 1" in message
    assert problem in message
    assert not table_exists(database, "after_it")
    assert ledger(database) == []
    # A transactional file is rolled back whole; a no-transaction file keeps what ran before.
    assert table_exists(database, "before_it") == bool(header)


def test_a_file_with_bare_cr_line_breaks_runs_as_postgresql_reads_it(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations({"0001_t.sql": b"-- c\rCREATE TABLE t(x int);\r"})
    code, message, _ = up(database, directory)
    assert code == 0, message
    assert table_exists(database, "t")
    plan = run_inprocess(["plan"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert "\r" not in plan.stdout


def test_a_failing_statement_is_located_by_line_and_column_across_cr_crlf_and_lf(
    database: Database, write_migrations: Files
) -> None:
    sql = b"SELECT 1;\r\nSELECT 2;\rSELECT 3;\n  SELECT x FROM nowhere_t;\n"
    code, message, _ = up(database, write_migrations({"0001_pos.sql": sql}))
    assert code == 5
    assert "failed at line 4, column 17" in message, message


def test_the_first_statement_is_located_although_begin_rides_in_its_query(
    database: Database, write_migrations: Files
) -> None:
    code, message, _ = up(database, write_migrations({"0001_pos.sql": "  SELECT x FROM nowhere_t;\n"}))
    assert code == 5
    assert "failed at line 1, column 17" in message, message


ATOMIC = (
    "CREATE FUNCTION sign_of(x int) RETURNS text LANGUAGE sql IMMUTABLE\n"
    "BEGIN ATOMIC\n"
    "  SELECT CASE WHEN x > 0 THEN 'plus' WHEN x < 0 THEN 'minus' ELSE 'zero' END;\n"
    "END;\n"
)
RULE = (
    "CREATE TABLE events(x int);\nCREATE TABLE audit_a(x int);\nCREATE TABLE audit_b(x int);\n"
    "CREATE RULE fan_out AS ON INSERT TO events DO ALSO (\n"
    "  INSERT INTO audit_a VALUES (NEW.x);\n"
    "  INSERT INTO audit_b VALUES (NEW.x)\n"
    ");\n"
)


@pytest.mark.parametrize("header", ["", NO_TX])
def test_sql_standard_bodies_and_multi_action_rules_apply_as_written(
    database: Database, write_migrations: Files, header: str
) -> None:
    directory = write_migrations({"0001_atomic.sql": header + ATOMIC, "0002_rule.sql": header + RULE})
    code, message, _ = up(database, directory)
    assert code == 0, message
    assert database.psql("SELECT sign_of(-4) || sign_of(0) || sign_of(9)") == "minuszeroplus"
    database.psql("INSERT INTO events VALUES (7)")
    assert database.psql("SELECT (SELECT x FROM audit_a) + (SELECT x FROM audit_b)") == "14"
    assert ledger(database) == ["1|applied", "2|applied"]


def test_a_commit_the_splitter_cannot_see_is_reported_as_possibly_committed(
    database: Database, write_migrations: Files
) -> None:
    # psql's scanner, and so ours, reads the word BEGIN after CREATE FUNCTION as the start of a
    # body: the COMMIT hides inside one "statement". The guard still stops the file, and the
    # message does not claim a rollback it cannot have done.
    sql = (
        "CREATE TABLE first_t(x int);\n"
        "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT; CREATE TABLE b(x int);\n"
    )
    code, message, _ = up(database, write_migrations({"0001_hidden.sql": sql}))
    assert code == 5, message
    assert "ended the migrator's transaction" in message
    assert "may have been committed" in message and "rolled back" not in message
    assert not table_exists(database, "b")
    assert ledger(database) == []


# With standard_conforming_strings off, the server reads 'a\'' as a string holding a quote and runs
# the COMMIT; the splitter reads it as psql does with the setting on: the COMMIT inside a string.
HIDDEN_COMMIT = "SELECT 'a\\'';COMMIT;SELECT '';\n"


def test_a_commit_hidden_by_turning_standard_conforming_strings_off_is_refused_before_anything_runs(
    database: Database, write_migrations: Files
) -> None:
    sql = f"CREATE TABLE keep_me(x int);\nSET standard_conforming_strings = off;\n{HIDDEN_COMMIT}"
    code, message, names = up(database, write_migrations({"0001_hidden.sql": sql}))
    assert code == 2, message
    assert "line 2, column 1" in message and "standard_conforming_strings" in message
    assert "migration_started" not in names
    assert not table_exists(database, "keep_me") and ledger(database) == []


def test_a_database_whose_default_turns_standard_conforming_strings_off_still_reads_files_as_split(
    database: Database, write_migrations: Files
) -> None:
    database.psql(f'ALTER DATABASE "{database.name}" SET standard_conforming_strings = off')
    directory = write_migrations({"0001_hidden.sql": f"CREATE TABLE keep_me(x int);\n{HIDDEN_COMMIT}"})
    code, message, _ = up(database, directory)
    # Read as split, the last string runs on into the guard: PostgreSQL rejects the query before
    # running any of it, and the file rolls back.
    assert code == 5 and "syntax error" in message and "rolled back" in message, message
    assert not table_exists(database, "keep_me") and ledger(database) == []


def test_a_backslash_in_strings_quoted_names_dollar_quotes_and_comments_is_no_meta_command(
    database: Database, write_migrations: Files
) -> None:
    sql = (
        "CREATE TABLE \"we\\ird\" (v text DEFAULT E'a\\\\b\\'c' CHECK (v <> '\\'));\n"
        "-- a \\comment\n/* \\another */\n"
        "DO $body$ BEGIN PERFORM '\\'; END $body$;\n"
        "COMMENT ON TABLE \"we\\ird\" IS 'copy from stdin: \\copy';\n"
    )
    code, message, _ = up(database, write_migrations({"0001_backslashes.sql": sql}))
    assert code == 0, message
    assert database.psql("SELECT obj_description('\"we\\ird\"'::regclass)") == "copy from stdin: \\copy"


def test_a_meta_command_is_located_at_its_backslash(database: Database, write_migrations: Files) -> None:
    sql = "CREATE TABLE a(x int);\n  SELECT 'CREATE TABLE b(x int)' \\gexec\n"
    code, message, _ = up(database, write_migrations({"0001_gexec.sql": sql}))
    assert code == 2 and "line 2, column 34: `\\gexec`" in message, message
