"""Benchmark: what the size of a migration file costs (issue 19, item 2).

The text work of a run on one file of N statements, in this process and on CPU time (the machine
is shared, so wall time mostly measures the neighbours): reading it into the catalog, the file
rules, `plan`'s text, and the apply bookkeeping (splitting, and the line of every statement for
its progress and error messages). Beside it, in the same run, the baseline: the line and column of
every statement found the way they were before, scanning the file from its start each time (the
rest of the work as now); that is what made 20,000 statements take 45.6 s. Where the baseline
would take minutes it is timed on `BASELINE_SAMPLE` evenly spaced statements and scaled to all of
them (marked "est.").

Then `kata-migrate up` in-process on a real server, wall time, for the statement counts of the
issue (5,000 took 4 s and 20,000 took 45.6 s before this change).

`python -m bench file_size`; BENCH_FILE_SIZE_UP="5000 20000" sets the `up` sizes ("" skips them).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench import report
from localpg.throwaway import running_server, wheel_bin_dir
from migrator.cli import run as run_migrator
from schema.catalog import Migration, parse_migration
from schema.rules import violations
from schema.splitter import LINE_BREAK

STATEMENT_COUNTS: Final = (5_000, 20_000, 100_000)
FIFTY_MB: Final = 50 * 1000 * 1000
BASELINE_SAMPLE: Final = 500
FULL_BASELINE_UP_TO: Final = 5_000
UP_COUNTS: Final = tuple(int(n) for n in os.environ.get("BENCH_FILE_SIZE_UP", "5000 20000").split())
OLD_LINE_BREAK: Final = re.compile(r"\r\n?|\n")


def old_line_column(text: str, offset: int) -> tuple[int, int]:
    """The baseline: line and column found by scanning the text from its start (before issue 19)."""
    offset = max(0, min(offset, len(text)))
    line, line_start = 1, 0
    for match in OLD_LINE_BREAK.finditer(text, 0, offset):
        line, line_start = line + 1, match.end()
    return line, offset - line_start + 1


def statement(i: int) -> str:
    return f"INSERT INTO events (id, kind, note) VALUES ({i}, 'created', 'row {i}; with a '' quote');\n"


def file_of(count: int) -> bytes:
    return "".join(statement(i) for i in range(count)).encode()


def file_of_size(size: int) -> bytes:
    line = len(statement(10**6))
    return file_of(size // line)


def cpu_seconds(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def pipeline(raw: bytes) -> tuple[float, float, Migration]:
    """CPU seconds of what a run does with the file's text besides finding lines (catalog read,
    rules, plan, the split), then of finding the line of every statement; and the file."""
    started = time.process_time()
    migration = parse_migration("0001_big.sql", raw)
    assert violations(migration) == ()
    LINE_BREAK.sub("\n", migration.sql)  # plan
    offsets = [each.offset for each in migration.statements]
    rest = time.process_time() - started
    lines = cpu_seconds(lambda: [migration.lines.line_column(offset) for offset in offsets])
    return rest, lines, migration


def baseline_lines(migration: Migration) -> tuple[float, bool]:
    """CPU seconds of the old line_column for every statement; True when scaled from a sample."""
    offsets = [each.offset for each in migration.statements]
    sampled = len(offsets) > FULL_BASELINE_UP_TO
    chosen = offsets[:: max(1, len(offsets) // BASELINE_SAMPLE)] if sampled else offsets
    seconds = cpu_seconds(lambda: [old_line_column(migration.sql, offset) for offset in chosen])
    return seconds * len(offsets) / len(chosen), sampled


def text_rows() -> list[list[object]]:
    rows: list[list[object]] = []
    files = [(f"{count:,} statements", file_of(count)) for count in STATEMENT_COUNTS]
    files.append(("50 MB file", file_of_size(FIFTY_MB)))
    for label, raw in files:
        rest, lines, migration = pipeline(raw)
        old_lines, estimated = baseline_lines(migration)
        rows.append(
            [
                label,
                f"{len(migration.statements):,}",
                f"{len(raw) / 1e6:.1f}",
                f"{rest + lines:.2f}",
                f"{lines:.3f}",
                f"{rest + old_lines:.1f}" + (" (est.)" if estimated else ""),
                report.ratio(rest + old_lines, rest + lines),
            ]
        )
    return rows


def up_rows() -> list[list[object]]:
    rows: list[list[object]] = []
    with running_server(wheel_bin_dir(16)) as server:
        for count in UP_COUNTS:
            folder = Path(tempfile.mkdtemp(prefix="kata-bench-size-"))
            table = "CREATE TABLE events (id int, kind text, note text);\n"
            (folder / "0001_big.sql").write_bytes(table.encode() + file_of(count))
            database = server.create_database("size")
            server.psql("CREATE EXTENSION vector", database)
            env = {"DATABASE_URL": server.url(database), "MIGRATIONS_DIR": str(folder)}
            started = time.monotonic()
            code = run_migrator(["up"], env, io.StringIO(), io.StringIO())
            seconds = time.monotonic() - started
            rows.append([f"{count:,}", code, f"{seconds:.1f}"])
            server.drop_database(database)
    return rows


def run() -> str:
    text = report.table(
        "Text work of one file (CPU s): catalog read, rules, plan, apply bookkeeping",
        ["file", "statements", "MB", "now", "of which lines", "baseline: lines from the file start", "ratio"],
        text_rows(),
    )
    if not UP_COUNTS:
        return text
    title = "kata-migrate up of one file (wall s, real server)"
    up = report.table(title, ["statements", "exit", "s"], up_rows())
    return text + "\n" + up


if __name__ == "__main__":
    print(run())
