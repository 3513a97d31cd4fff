"""Snapshots that are not what `make schema` writes, met by both programs: each is exit 2 at the
start, naming the file and what is wrong, never exit 1, a traceback, a probe whose schema check
fails with "unexpected error" every round, or a live check silently turned off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main as probe_main
from schema.catalog import read_catalog
from schema.expected import ExpectedSchema
from schema.snapshot import MAX_BYTES, SnapshotError
from tests.conftest import Database
from tests.fixtures.expected_schema import migrations_up_to
from tests.migrator.conftest import REPO, migrator_env, run_inprocess
from tests.schema.conftest import LATEST

# Nothing listens on port 1: a snapshot accepted by mistake shows as exit 3 (migrator); the probe
# is given an address of no local interface, so one accepted by mistake ends in "cannot listen"
# (a different message) instead of serving for good.
NOWHERE = "postgresql://app:pw@127.0.0.1:1/app?sslmode=disable"
NO_LOCAL_ADDRESS = "192.0.2.1"


def snapshot(directory: Path, version: int = LATEST) -> Path:
    return directory / "snapshots" / f"{version:04d}.json"


def edited(directory: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite the latest snapshot with one change made to its document."""
    path = snapshot(directory)
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, allow_nan=True))


def deep_nesting(directory: Path) -> str:
    snapshot(directory).write_text('{"version": 5, "tables": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return "is malformed: arrays and objects nest more than 8 deep"


def infinite_version(directory: Path) -> str:
    edited(directory, lambda d: d.update(version=float("inf")))
    return "is malformed: Infinity is not a JSON value"


def huge_version(directory: Path) -> str:
    path = snapshot(directory)
    path.write_text(path.read_text().replace(f'"version": {LATEST}', '"version": 1e999'))
    return "is malformed: version is a number, expected a whole number"


def string_version(directory: Path) -> str:
    edited(directory, lambda d: d.update(version=str(LATEST)))
    return "is malformed: version is a string, expected a whole number"


def fractional_version(directory: Path) -> str:
    edited(directory, lambda d: d.update(version=LATEST + 0.7))
    return f"is malformed: version is the number {LATEST + 0.7}, expected a whole number"


def boolean_version(directory: Path) -> str:
    edited(directory, lambda d: d.update(version=True))
    return "is malformed: version is a boolean, expected a whole number"


def numeric_extension_version(directory: Path) -> str:
    edited(directory, lambda d: d["extensions"][0].update(version=5))
    return "is malformed: extensions[0].version is the number 5, expected a string"


def string_for_a_boolean(directory: Path) -> str:
    edited(directory, lambda d: d["tables"][0]["columns"][0].update(not_null="true"))
    return "is malformed: tables[0].columns[0].not_null is a string, expected true or false"


def null_labels(directory: Path) -> str:
    edited(directory, lambda d: d["enums"][0].update(labels=None))
    return "is malformed: enums[0].labels is null, expected a list"


def unknown_key(directory: Path) -> str:
    edited(directory, lambda d: d.update(indexs=[]))
    return "is malformed: the document has the unknown key 'indexs'"


def missing_key(directory: Path) -> str:
    edited(directory, lambda d: d.pop("indexes"))
    return "is malformed: the document lacks the key 'indexes'"


def duplicate_key(directory: Path) -> str:
    path = snapshot(directory)
    path.write_text(path.read_text().replace(f'"version": {LATEST}', f'"version": 1, "version": {LATEST}'))
    return "is malformed: the key 'version' appears twice in one object"


def lone_surrogate(directory: Path) -> str:
    path = snapshot(directory)
    path.write_text(path.read_text().replace('"contexts"', '"\\ud800"', 1))
    return "holds a NUL character or a lone surrogate: not text"


def too_large(directory: Path) -> str:
    path = snapshot(directory)
    text = path.read_text()
    path.write_text(text + " " * (MAX_BYTES + 1 - len(text)))
    return "is larger than 1024 KiB"


def misnumbered(directory: Path) -> str:
    edited(directory, lambda d: d.update(version=7))
    return f"says version 7, expected {LATEST}"


def missing_snapshots(directory: Path) -> tuple[str, ...]:
    snapshot(directory, 2).unlink()
    snapshot(directory, 4).unlink()
    return "snapshots missing from", "0002.json, 0004.json"


def empty_folder(directory: Path) -> tuple[str, ...]:
    for path in (directory / "snapshots").iterdir():
        path.unlink()
    return "snapshots missing from", ", ".join(f"{v:04d}.json" for v in range(1, LATEST + 1))


def fifo(directory: Path) -> str:
    snapshot(directory, 3).unlink()
    os.mkfifo(snapshot(directory, 3))
    return "0003.json' cannot be read: it is a FIFO (named pipe), not a regular file"


def directory_for_a_file(directory: Path) -> str:
    snapshot(directory, 3).unlink()
    snapshot(directory, 3).mkdir()
    return "0003.json' cannot be read: it is a directory, not a regular file"


def dangling_link(directory: Path) -> str:
    snapshot(directory, 3).unlink()
    snapshot(directory, 3).symlink_to(directory / "gone.json")
    return "0003.json' cannot be read: No such file or directory (a symbolic link to nothing)"


def folder_is_a_file(directory: Path) -> str:
    for path in (directory / "snapshots").iterdir():
        path.unlink()
    (directory / "snapshots").rmdir()
    (directory / "snapshots").write_text("{}")
    return "/snapshots' is not a directory"


DEFECTS: dict[str, Callable[[Path], str | tuple[str, ...]]] = {
    f.__name__: f
    for f in (
        deep_nesting,
        infinite_version,
        huge_version,
        string_version,
        fractional_version,
        boolean_version,
        numeric_extension_version,
        string_for_a_boolean,
        null_labels,
        unknown_key,
        missing_key,
        duplicate_key,
        lone_surrogate,
        too_large,
        misnumbered,
        missing_snapshots,
        empty_folder,
        fifo,
        directory_for_a_file,
        dangling_link,
        folder_is_a_file,
    )
}


def defective(tmp_path: Path, defect: str) -> tuple[Path, tuple[str, ...]]:
    """The shipped migrations with one snapshot defect, and what the message must say."""
    directory = migrations_up_to(tmp_path, LATEST)
    said = DEFECTS[defect](directory)
    return directory, (said,) if isinstance(said, str) else said


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_defective_snapshot_is_a_snapshot_error_naming_the_file(tmp_path: Path, defect: str) -> None:
    directory, said = defective(tmp_path, defect)
    with pytest.raises(SnapshotError) as refused:
        ExpectedSchema.of(read_catalog(directory))
    message = str(refused.value)
    assert str(directory / "snapshots") in message
    assert all(part in message for part in said), message
    assert "make schema" in message


@pytest.mark.parametrize("defect", DEFECTS)
def test_the_migrator_exits_2_before_connecting_naming_the_snapshot(tmp_path: Path, defect: str) -> None:
    directory, said = defective(tmp_path, defect)
    for command in (["up"], ["verify"], ["status"]):
        outcome = run_inprocess(
            command, migrator_env(NOWHERE, MIGRATIONS_DIR=str(directory), MIGRATOR_CONNECT_TIMEOUT="0")
        )
        assert outcome.code == 2, (command, outcome.stderr)
        assert str(directory / "snapshots") in outcome.final_message
        assert all(part in outcome.final_message for part in said), outcome.final_message
        assert "start" not in outcome.names()  # refused before the run started, let alone connected


class Records(logging.Handler):
    """The probe's log records: its main() replaces the root logger's handlers, not its own."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("defect", DEFECTS)
def test_the_probe_exits_2_at_start_naming_the_snapshot(
    tmp_path: Path, defect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, said = defective(tmp_path, defect)
    for name in [n for n in os.environ if n.startswith(("DATABASE_", "PROBE_", "MIGRATIONS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", NOWHERE)
    monkeypatch.setenv("MIGRATIONS_DIR", str(directory))
    monkeypatch.setenv("PROBE_HOST", NO_LOCAL_ADDRESS)
    seen = Records()
    logging.getLogger("probe").addHandler(seen)
    try:
        assert probe_main([]) == 2
    finally:
        logging.getLogger("probe").removeHandler(seen)
    last = seen.records[-1]
    assert getattr(last, "event", None) == "config_error", last.getMessage()
    assert str(directory / "snapshots") in last.getMessage()
    assert all(part in last.getMessage() for part in said), last.getMessage()


@pytest.mark.parametrize("program", [["-m", "migrator", "up"], ["-m", "probe", "--host", NO_LOCAL_ADDRESS]])
@pytest.mark.parametrize("defect", ["deep_nesting", "fifo", "empty_folder"])
def test_both_programs_as_processes_exit_2_without_a_traceback(
    tmp_path: Path, program: list[str], defect: str
) -> None:
    directory, said = defective(tmp_path, defect)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MIGRAT", "PROBE_"))}
    env.update(DATABASE_URL=NOWHERE, MIGRATIONS_DIR=str(directory), MIGRATOR_LOG_FORMAT="json")
    # The bound is communicate's: a FIFO that hung the read fails the test instead of the suite.
    done = subprocess.run(
        [sys.executable, *program], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    message = json.loads(done.stderr.strip().splitlines()[-1])["msg"]
    assert all(part in message for part in said), message


def test_without_any_snapshots_folder_verify_warns_and_claims_no_check(
    database: Database, tmp_path: Path
) -> None:
    directory = migrations_up_to(tmp_path, LATEST)
    for path in (directory / "snapshots").iterdir():
        path.unlink()
    (directory / "snapshots").rmdir()
    env = migrator_env(database.url, MIGRATIONS_DIR=str(directory))
    assert run_inprocess(["up"], env).code == 0
    outcome = run_inprocess(["verify"], env)
    assert outcome.code == 0, outcome.stderr
    assert "schema_unchecked" in outcome.names()
    assert "schema_verified" not in outcome.names()
    [verified] = [e for e in outcome.events() if e["event"] == "verified"]
    assert "the live schema was not checked" in str(verified["msg"])
    said = " ".join(str(event.get("msg", "")) for event in outcome.events())
    assert "holds what" not in said and "as they made it" not in said
    assert "live schema: not checked" in run_inprocess(["status"], env).stdout
