"""One event is one line, and nothing from a server notice, the ledger, a file or the environment
reaches a terminal raw: control characters are escaped in text logs, JSON logs and `status`.
Usage errors are written in the format asked for, and a full disk gets its own advice."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localpg.throwaway import PostgresServer, wheel_bin_dir
from tests.conftest import Database
from tests.migrator.conftest import migrator_env, run_inprocess
from tests.schema.conftest import LATEST

Files = Callable[[dict[str, str | bytes]], Path]
# Written by the test, not imported: what a reader must never get raw (C0, DEL, C1, the Unicode
# line and paragraph separators, bidirectional overrides and isolates).
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) [a-z_]+( |$)")
# What a hostile notice or ledger row carries: a forged next log line, a terminal title and colour
# change, a C1 CSI, a NEL, the Unicode line separator and a right-to-left override.
HOSTILE = (
    "forged\n2026-01-01T00:00:00.000Z ERROR migration_failed "
    "\x1b]0;pwned\x07\x1b[31mred\x9b2J\x85\u2028\u202eevil"
)


def sql_literal(text: str) -> str:
    """`text` as an E'' literal, every character outside printable ASCII as a \\u escape."""
    escaped = "".join(c if " " <= c <= "~" and c not in "'\\" else f"\\u{ord(c):04x}" for c in text)
    return f"E'{escaped}'"


def notice_file(text: str) -> str:
    return f"DO $$ BEGIN RAISE NOTICE '%', {sql_literal(text)}; END $$;\n"


def assert_clean_text(stderr: str) -> None:
    for line in stderr.split("\n")[:-1]:
        assert TEXT_LINE.match(line), repr(line)
        assert not UNSAFE.search(line), repr(line)


def test_a_server_notice_with_a_newline_and_escapes_is_one_escaped_text_line(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations({"0001_notice.sql": notice_file(HOSTILE)})
    outcome = run_inprocess(
        ["up", "--log-format", "text"], migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    )
    assert outcome.code == 0, outcome.stderr
    assert_clean_text(outcome.stderr)
    notices = [line for line in outcome.stderr.splitlines() if " server_notice " in line]
    assert len(notices) == 1, outcome.stderr
    assert "forged\\n2026-01-01T00:00:00.000Z ERROR migration_failed \\x1b]0;pwned\\x07" in notices[0]
    assert "\\x9b2J\\x85\\u2028\\u202eevil" in notices[0], notices[0]


def test_a_server_notice_in_json_is_one_line_that_reads_back_as_sent(
    database: Database, write_migrations: Files
) -> None:
    directory = write_migrations({"0001_notice.sql": notice_file(HOSTILE)})
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stderr.split("\n")[:-1]
    assert not [line for line in lines if UNSAFE.search(line)]
    events = [json.loads(line) for line in lines]
    assert [e["msg"] for e in events if e["event"] == "server_notice"] == [HOSTILE]


def test_pod_name_with_control_characters_is_escaped_in_text_logs(database: Database) -> None:
    env = migrator_env(database.url, MIGRATOR_LOG_FORMAT="text", POD_NAME="pod\x1b]0;pwned\x07\x9b\u2028")
    outcome = run_inprocess(["status"], env)
    assert outcome.code == 0, outcome.stderr
    assert_clean_text(outcome.stderr)
    shown = 'application_name="kata-migrate@pod\\x1b]0;pwned\\x07\\x9b\\u2028"'
    assert shown in outcome.stderr, outcome.stderr


def test_status_shows_the_ledgers_control_characters_escaped(database: Database) -> None:
    assert run_inprocess(["up"], migrator_env(database.url)).code == 0
    hostile = sql_literal("\x1b]0;pwned\x07\nfake row\u2028")
    update = f"UPDATE kata_schema_migrations SET applied_by = {hostile}, file = {hostile}"
    database.psql(f"{update} WHERE version = 1")
    outcome = run_inprocess(["status"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    assert not UNSAFE.search(outcome.stdout.replace("\n", "")), repr(outcome.stdout)
    rows = outcome.stdout.splitlines()
    assert len(rows) == 1 + LATEST + 1, rows  # the header, one line per version, the live schema
    assert "\\x1b]0;pwned\\x07\\nfake row\\u2028" in rows[1], rows[1]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["up", "--log-format", "text", "--no-such-flag"], {}),
        (
            ["status", "--log-format=text", "--lock-timeout", "soon"],
            {"MIGRATOR_LOG_FORMAT": "json", "DATABASE_URL": "postgresql://app@db.invalid/app"},
        ),
        (["--log-format", "text"], {"DATABASE_URL": "not a url"}),
    ],
)
def test_a_usage_error_is_written_in_the_log_format_asked_for(args: list[str], env: dict[str, str]) -> None:
    outcome = run_inprocess(args, env)
    assert outcome.code == 2, outcome.stderr
    assert re.fullmatch(r"\S+Z ERROR usage_error .+ exit_code=2\n", outcome.stderr), outcome.stderr


@pytest.fixture
def small_server() -> Iterator[PostgresServer]:
    """A server of its own: the disk-full test points one of its files at /dev/full."""
    server = PostgresServer.start(wheel_bin_dir(16))
    try:
        yield server
    finally:
        server.stop()


def test_a_full_disk_exits_5_saying_to_free_space_not_to_fix_the_file(
    small_server: PostgresServer, write_migrations: Files
) -> None:
    name = small_server.create_database()
    directory = write_migrations({"0001_filler.sql": "CREATE TABLE filler (id int);\n"})
    env = migrator_env(small_server.url(name), MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    # The table's file becomes /dev/full: the server's own write to it fails with ENOSPC, the
    # error of a full volume (SQLSTATE 53100), without mounting a small file system.
    relative = small_server.psql("SELECT pg_relation_filepath('filler')", name)
    path = small_server.data_dir / relative
    path.unlink()
    os.symlink("/dev/full", path)
    (directory / "0002_fill.sql").write_text("INSERT INTO filler SELECT generate_series(1, 1000);\n")
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 5, outcome.stderr
    message = outcome.final_message
    assert "SQLSTATE 53100" in message and "0002_fill.sql" in message, message
    assert "the server is out of disk space: free space or grow the volume, then run again" in message
    assert "fix the file" not in message
    assert "rolled back, nothing recorded" in message
    assert ledger_versions(small_server, name) == ["1"]


def ledger_versions(server: PostgresServer, name: str) -> list[str]:
    return server.psql("SELECT version FROM kata_schema_migrations ORDER BY 1", name).splitlines()
