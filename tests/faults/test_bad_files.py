"""Migration folders that are not what they seem, met by both programs as real processes: each
exits 2 at once naming the file and the problem. A FIFO must not hang either one: the bound is
`communicate(timeout=...)`, a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.probe_process import REPO

# Nothing listens on port 1: reaching the network would be exit 3 (migrator) or a running probe.
NOWHERE = "postgresql://app:pw@127.0.0.1:1/app?sslmode=disable"
PROGRAMS = {
    "migrator": ["-m", "migrator", "up"],
    "probe": ["-m", "probe", "--host", "127.0.0.1", "--port", "1"],
}


def fifo(directory: Path) -> str:
    os.mkfifo(directory / "0002_f.sql")
    return "/0002_f.sql' cannot be read: it is a FIFO (named pipe), not a regular file"


def broken_symlink(directory: Path) -> str:
    (directory / "0002_l.sql").symlink_to(directory / "gone.sql")
    return "/0002_l.sql' cannot be read: No such file or directory (a symbolic link to nothing)"


def directory_named_sql(directory: Path) -> str:
    (directory / "0002_d.sql").mkdir()
    return "/0002_d.sql' cannot be read: it is a directory, not a regular file"


def upper_case_suffix(directory: Path) -> str:
    (directory / "0002_b.SQL").write_text("SELECT 2;")
    return "'0002_b.SQL' is malformed: every file whose name contains '.sql' must be NNNN_slug.sql"


def only_comments(directory: Path) -> str:
    (directory / "0002_c.sql").write_text("-- nothing here\n;;;\n")
    return "'0002_c.sql' has no SQL statement"


def no_files(directory: Path) -> str:
    (directory / "0001_a.sql").unlink()
    return "has no migration files"


CASES: dict[str, Callable[[Path], str]] = {
    f.__name__: f
    for f in (fifo, broken_symlink, directory_named_sql, upper_case_suffix, only_comments, no_files)
}


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_migrations_folder_exits_2_naming_the_file_in_both_programs(
    tmp_path: Path, program: str, case: str
) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_a.sql").write_text("SELECT 1;")
    expected = CASES[case](directory)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MIGRAT", "PROBE_"))}
    env.update(DATABASE_URL=NOWHERE, MIGRATIONS_DIR=str(directory), MIGRATOR_LOG_FORMAT="json")
    result = subprocess.run(
        [sys.executable, *PROGRAMS[program]], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert expected in last["msg"]
