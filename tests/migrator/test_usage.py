"""Bad input exits 2 and pooled URLs exit 9, all before any connection is attempted."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.cli import error_for, run
from migrator.parser import load_settings
from migrator.verbs import VERBS
from pgconn.config import SettingsError
from pgconn.pooler import PoolerSetting
from tests.migrator.conftest import migrator_env, run_inprocess

# Nothing listens here and .invalid never resolves: reaching the network would give exit 3.
NOWHERE = "postgresql://app:pw@db.invalid:5432/app"


@pytest.mark.parametrize(
    ("env", "args", "problem"),
    [
        ({}, ["up"], "DATABASE_URL is not set"),
        ({"DATABASE_URL": "mysql://u:secretpw@h/db"}, ["up"], "must start with postgresql://"),
        ({"DATABASE_URL": "postgresql://u:secretpw@h:99999/db"}, ["up"], "port"),
        ({"DATABASE_URL": NOWHERE + "?sslmode=maybe"}, ["up"], "sslmode"),
        ({"DATABASE_URL": NOWHERE, "DATABASE_POOLED": "perhaps"}, ["up"], "DATABASE_POOLED"),
        ({"DATABASE_URL": NOWHERE}, ["up", "--lock-timeout", "soon"], "--lock-timeout"),
        ({"DATABASE_URL": NOWHERE, "MIGRATOR_CONNECT_TIMEOUT": "-1"}, ["up"], "MIGRATOR_CONNECT_TIMEOUT"),
        *[
            (
                {"DATABASE_URL": NOWHERE, "MIGRATOR_STATEMENT_TIMEOUT": value},
                ["up"],
                "MIGRATOR_STATEMENT_TIMEOUT",
            )
            for value in ("1e10", "0.0001", "-5", "nan", "inf", "3000000", "٣")
        ],
        ({"DATABASE_URL": NOWHERE}, ["up", "--ddl-lock-timeout", "0.0004"], "--ddl-lock-timeout"),
        ({"DATABASE_URL": NOWHERE}, ["wait", "--timeout", "1e400"], "--timeout"),
        ({"DATABASE_URL": NOWHERE + "?connect_timeout=abc"}, ["status"], "connect_timeout"),
        ({"DATABASE_URL": "postgresql://u:p@" + "h" * 100_000 + "/db"}, ["status"], "not a valid DNS name"),
        ({"DATABASE_URL": NOWHERE}, ["frobnicate"], "invalid choice"),
        ({"DATABASE_URL": NOWHERE}, ["baseline", "x"], "positive integer"),
        ({"DATABASE_URL": NOWHERE}, ["baseline", "99"], "no migration file has that version"),
        ({"DATABASE_URL": NOWHERE}, ["up", "--migrations", "/nonexistent/dir"], "does not exist"),
    ],
)
def test_bad_input_exits_2_before_connecting(env: dict[str, str], args: list[str], problem: str) -> None:
    outcome = run_inprocess(args, {"MIGRATOR_CONNECT_TIMEOUT": "30", **env})
    assert outcome.code == 2, outcome.stderr
    assert problem in outcome.final_message
    assert outcome.names() == ["usage_error"]  # the verdict is the only event: nothing was tried


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"0001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 2;"}, "share version 1"),
        ({"1_bad name.sql": "SELECT 1;"}, "malformed"),
        ({"0001_a.sql": b"\xc3\x28"}, "UTF-8"),
        ({"0001_a.sql": ""}, "empty"),
        # Above the ledger's bigint: it passed the catalog, then failed at "line 1, column 1" (exit 5).
        ({"99999999999999999999_x.sql": "SELECT 1;"}, "from 1 to 9223372036854775807"),
    ],
)
def test_bad_migration_files_exit_2_naming_the_file(
    write_migrations: Callable[[dict[str, str | bytes]], Path], files: dict[str, str | bytes], problem: str
) -> None:
    outcome = run_inprocess(["up", "--migrations", str(write_migrations(files))], migrator_env(NOWHERE))
    assert outcome.code == 2
    assert problem in outcome.final_message
    assert any(name in outcome.final_message for name in files)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DATABASE_URL": "postgresql://app:pw@ep-x-pooler.invalid/app"}, "is a pooler"),
        ({"DATABASE_URL": NOWHERE, "DATABASE_POOLED": "true"}, "DATABASE_POOLED=true"),
        (
            {"DATABASE_URL": NOWHERE, "DATABASE_URL_UNPOOLED": "postgresql://app:pw@ep-y-pooler.invalid/app"},
            "DATABASE_URL_UNPOOLED points at a pooler",
        ),
    ],
)
@pytest.mark.parametrize("command", ["up", "baseline"])
def test_pooled_url_without_direct_url_exits_9_before_any_network_call(
    env: dict[str, str], reason: str, command: str
) -> None:
    args = [command, "1"] if command == "baseline" else [command]
    outcome = run_inprocess(args, migrator_env(None, MIGRATOR_CONNECT_TIMEOUT="30", **env))
    assert outcome.code == 9, outcome.stderr
    assert reason in outcome.final_message
    assert "DATABASE_URL_UNPOOLED" in outcome.final_message
    assert outcome.names() == ["start", "pooler_refused"]  # refused before any connection attempt


@pytest.mark.parametrize("command", ["up", "baseline"])
def test_the_pooled_flag_marks_a_direct_host_pooled_like_the_variable_so_exit_9(command: str) -> None:
    args = [command, "--pooled", "true", *(["1"] if command == "baseline" else [])]
    outcome = run_inprocess(
        args, migrator_env(NOWHERE, MIGRATOR_CONNECT_TIMEOUT="30", DATABASE_POOLED="false")
    )
    assert outcome.code == 9, outcome.stderr
    assert outcome.names() == ["start", "pooler_refused"]


@pytest.mark.parametrize(
    ("argv", "env", "pooled", "directory"),
    [
        (
            ["--pooled", "on", "--migrations", "/flag"],
            {"DATABASE_POOLED": "no", "MIGRATIONS_DIR": "/env"},
            "true",
            "/flag",
        ),
        ([], {"DATABASE_POOLED": "no", "MIGRATIONS_DIR": "/env"}, "false", "/env"),
        ([], {"DATABASE_POOLED": " ", "MIGRATIONS_DIR": ""}, "auto", None),
        (["--migrations", ""], {}, "auto", None),  # the packaged files, not the current directory
        ([], {}, "auto", None),
    ],
)
@pytest.mark.parametrize("command", ["up", "status"])
def test_database_settings_take_flags_over_environment_over_default(
    command: str, argv: list[str], env: dict[str, str], pooled: str, directory: str | None
) -> None:
    settings = load_settings([command, *argv], {"DATABASE_URL": NOWHERE, **env}, tty=False).database
    assert settings.pooled is PoolerSetting(pooled)
    assert settings.migrations_dir == (Path(directory) if directory else None)


def test_a_bad_pooled_flag_is_exit_2_naming_the_flag() -> None:
    outcome = run_inprocess(["status", "--pooled", "perhaps"], migrator_env(NOWHERE))
    assert outcome.code == 2, outcome.stderr
    assert "--pooled='perhaps': use auto, true or false" in outcome.final_message


def test_no_command_means_up() -> None:
    outcome = run_inprocess(["--lock-timeout", "1"], migrator_env("postgresql://a:b@x-pooler.invalid/db"))
    assert outcome.code == 9
    assert outcome.events()[-1]["event"] == "pooler_refused"


def test_help_shows_an_example_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"], {}, io.StringIO(), io.StringIO()) == 0
    text = capsys.readouterr().out
    for verb in VERBS:
        assert f"kata-migrate {verb.name}" in text
    for code in range(10):
        assert f"{code} " in text


def test_every_error_is_one_line_in_text_format() -> None:
    outcome = run_inprocess(["up"], {"MIGRATOR_LOG_FORMAT": "text"})
    assert outcome.code == 2
    assert outcome.stderr.count("\n") == 1
    assert "ERROR usage_error DATABASE_URL is not set" in outcome.stderr


def test_a_bad_wait_timeout_stops_only_wait() -> None:
    env = {"DATABASE_URL": NOWHERE, "MIGRATOR_WAIT_TIMEOUT": "soon"}
    for command in ("up", "status", "verify"):
        assert load_settings([command], env, tty=False).command == command
    with pytest.raises(SettingsError, match="MIGRATOR_WAIT_TIMEOUT"):
        load_settings(["wait"], env, tty=False)


def test_a_password_that_is_not_utf8_is_exit_2_and_never_printed() -> None:
    outcome = run_inprocess(["status"], {"DATABASE_URL": "postgresql://app:Sentinel\udcffpw@db.invalid/app"})
    assert outcome.code == 2, outcome.stderr
    assert "the password is not valid UTF-8" in outcome.final_message
    assert "Sentinel" not in outcome.stderr


def test_an_internal_error_names_its_type_and_place_but_never_its_text() -> None:
    try:
        "Sentinel\udcffpw".encode("utf-8")
    except UnicodeEncodeError as exc:
        message = str(error_for(exc))
    assert (
        "UnicodeEncodeError in test_an_internal_error_names_its_type_and_place_but_never_its_text()"
        in message
    )
    assert "test_usage.py:" in message and "Sentinel" not in message and "udcff" not in message
