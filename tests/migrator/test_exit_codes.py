"""The exit-code table lives once, in `migrator.errors.EXIT_CODES`: `--help`, README.md and
docs/migrator.md must list the same codes, each row starting with the table's meaning."""

from __future__ import annotations

import importlib
import io
import re
import socket
from pathlib import Path

import asyncpg
import pytest

from migrator import errors
from migrator.cli import error_for, run
from migrator.errors import exit_status
from pgconn.errors import is_connection_loss
from tests.conftest import Database
from tests.migrator.conftest import migrator_env, run_inprocess, start_process

REPO = Path(__file__).resolve().parents[2]


def documented_exit_codes(path: Path) -> dict[str, str]:
    """The `| code | meaning |` rows of the table under the first "Exit codes" heading."""
    text = path.read_text(encoding="utf-8")
    section = re.split(r"^#+ Exit codes\s*$", text, maxsplit=1, flags=re.MULTILINE)[1]
    rows = re.findall(r"^\| ([0-9][0-9 /]*?) \| (.+?) \|$", section.split("\n#", 1)[0], flags=re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize("document", ["README.md", "docs/migrator.md"])
def test_the_docs_list_every_exit_code_with_its_meaning(document: str) -> None:
    rows = documented_exit_codes(REPO / document)
    assert list(rows) == list(errors.EXIT_CODES), document
    for code, meaning in errors.EXIT_CODES.items():
        assert rows[code].startswith(meaning), (document, code, rows[code])


def test_help_lists_every_exit_code_with_its_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"], {}, io.StringIO(), io.StringIO()) == 0
    text = capsys.readouterr().out.split("exit codes:", 1)[1]
    listed = dict(re.findall(r"^  (\S+(?: / \S+)*)\s+(.+)$", text, flags=re.MULTILINE))
    assert listed == dict(errors.EXIT_CODES)


def test_every_error_class_exits_with_a_code_of_the_table() -> None:
    # Every module of the migrator's errors: the table's and each family's (migrator/*errors.py).
    modules = [importlib.import_module(f"migrator.{p.stem}") for p in (REPO / "migrator").glob("*errors.py")]
    assert len(modules) >= 5
    classes = [
        c
        for module in modules
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, errors.MigratorError)
    ]
    codes = {str(c.exit_code) for c in classes if c is not errors.Interrupted}
    assert codes == set(errors.EXIT_CODES) - {"0", "129 / 130 / 143"}
    assert errors.Interrupted("SIGTERM", 143).status == 143


def test_a_reader_that_closes_stdout_early_is_no_error_and_no_lost_connection(database: Database) -> None:
    env = migrator_env(database.url)
    assert run_inprocess(["up"], env).code == 0
    proc = start_process(["status", "--json"], env)  # as in `kata-migrate status --json | head -c0`
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
    assert "output_closed" in stderr and "connection_lost" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (PermissionError(13, "Permission denied"), False),
        (FileNotFoundError(2, "No such file"), False),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError(), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (asyncpg.ConnectionDoesNotExistError("closed"), True),
        # What pg_terminate_backend sometimes leaves in asyncpg instead (MagicStack/asyncpg#1069).
        (asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"), True),
    ],
)
def test_only_network_errors_count_as_a_lost_connection(exc: Exception, lost: bool) -> None:
    assert is_connection_loss(exc) is lost
    assert exit_status(error_for(exc)) == (3 if lost else 1)
