"""The exit-code table lives once, in `migrator.errors.EXIT_CODES`: `--help`, README.md and
docs/migrator.md must list the same codes, each row starting with the table's meaning."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from migrator import errors
from migrator.cli import run

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
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.MigratorError)
    ]
    codes = {str(c.exit_code) for c in classes if c is not errors.Interrupted}
    assert codes == set(errors.EXIT_CODES) - {"0", "129 / 130 / 143"}
    assert errors.Interrupted("SIGTERM", 143).status == 143
