"""Every option of both programs' tables is in the settings tables of README.md and of the program's
own page, under its environment variable, its flag and (the probe) its YAML key, with its default;
and every migrator verb has its row in the command tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from migrator.parser import OPTIONS as MIGRATOR_OPTIONS
from migrator.verbs import VERBS
from pgconn.config import Option
from probe.settings import OPTIONS as PROBE_OPTIONS

REPO = Path(__file__).resolve().parents[1]


def row_of(document: str, option: Option[Any]) -> str:
    """The table row whose first cell names the option's variable."""
    text = (REPO / document).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        # README and docs/migrator.md: "`VARIABLE` / `--flag`"; docs/probe.md: flag | variable | key.
        if f"`{option.env}`" in cells[0] or cells[1:2] == [f"`{option.env}`"]:
            return row
    pytest.fail(f"{document} has no settings row for {option.env}")


@pytest.mark.parametrize(
    ("document", "options", "yaml_keys"),
    [
        ("README.md", MIGRATOR_OPTIONS, False),
        ("README.md", PROBE_OPTIONS, False),
        ("docs/migrator.md", MIGRATOR_OPTIONS, False),
        ("docs/probe.md", PROBE_OPTIONS, True),
    ],
)
def test_every_option_is_documented_with_its_flag_key_and_default(
    document: str, options: Sequence[Option[Any]], yaml_keys: bool
) -> None:
    for option in options:
        row = row_of(document, option)
        if option.flag:
            assert f"`{option.flag}" in row or f" {option.flag}`" in row, (document, option.flag, row)
        if yaml_keys:
            assert f"`{option.key}`" in row, (document, option.key, row)
        if option.default:
            assert option.default in row, (document, option.default, row)


@pytest.mark.parametrize("document", ["README.md", "docs/migrator.md"])
def test_every_verb_has_one_row_in_the_command_tables_with_its_example(document: str) -> None:
    """The command tables are written by hand, from migrator/verbs.py: a verb added to the record
    and not to the docs, or removed and left there, fails here."""
    rows = [
        line for line in (REPO / document).read_text(encoding="utf-8").splitlines() if line.startswith("| `")
    ]
    documented = {}
    for row in rows:
        first = row.strip("|").split(" | ")[0].strip()
        example = row.rstrip().rstrip("|").rsplit(" | ", 1)[-1].strip()
        if example.startswith("`kata-migrate "):
            documented[first.split("`")[1].split()[0]] = example
    assert sorted(documented) == sorted(verb.name for verb in VERBS), document
    for verb in VERBS:
        assert documented[verb.name].startswith(f"`kata-migrate {verb.name}"), (document, verb.name)
