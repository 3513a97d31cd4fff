"""What the size of a migration file costs, counted rather than timed (issue 19, item 2): finding
the line and column of statements reads the file's line breaks once, not once per statement,
which made 20,000 statements take 45.6 s. The figures are in bench/file_size.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import schema.splitter
from schema.splitter import LineIndex
from tests.conftest import Database
from tests.migrator.conftest import ledger, migrator_env, run_inprocess

Files = Callable[[dict[str, str | bytes]], Path]
STATEMENTS = 400


class CountingBreaks:
    """The splitter's LINE_BREAK pattern, counting the characters its `finditer` calls cover: how
    line and column are found, before this change and after."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.scanned = 0

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[re.Match[str]]:
        end = len(text) if endpos is None else min(endpos, len(text))
        self.scanned += max(0, end - pos)
        return self.pattern.finditer(text, pos, end)

    def __getattr__(self, name: str) -> object:
        return getattr(self.pattern, name)


@pytest.fixture
def breaks(monkeypatch: pytest.MonkeyPatch) -> CountingBreaks:
    counter = CountingBreaks(schema.splitter.LINE_BREAK)
    monkeypatch.setattr(schema.splitter, "LINE_BREAK", counter)
    return counter


def test_a_run_reads_the_line_breaks_of_a_file_once_whatever_its_number_of_statements(
    database: Database, write_migrations: Files, breaks: CountingBreaks
) -> None:
    # Every statement's line is looked up (progress, the guard's messages); the last one fails, so
    # its position is looked up too.
    sql = "".join(f"CREATE TABLE t{i} (x int);\r\n" for i in range(STATEMENTS)) + "SELECT x FROM nowhere;\n"
    directory = write_migrations({"0001_many.sql": sql})
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 5 and f"line {STATEMENTS + 1}, column 15" in outcome.final_message, outcome.stderr
    assert ledger(database) == []
    # Once over the file (a statement a line: looked up from the start each time, it was 200 times).
    assert breaks.scanned <= len(sql), f"{breaks.scanned / len(sql):.1f} times the file"


texts = st.lists(st.sampled_from(["a", "b", " ", "\n", "\r", "\r\n", "é"]), max_size=30).map("".join)


@given(text=texts, data=st.data())
def test_line_index_counts_lf_crlf_and_a_bare_cr_each_as_one_line_break(
    text: str, data: st.DataObject
) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=len(text)))
    before = text[:offset]
    # A CRLF whose LF is at `offset` ends the line only after it: the CR alone is not a break there.
    breaks_before = [m for m in re.finditer(r"\r\n?|\n", text) if m.end() <= offset]
    line_start = breaks_before[-1].end() if breaks_before else 0
    assert LineIndex.of(text).line_column(offset) == (len(breaks_before) + 1, offset - line_start + 1), before
