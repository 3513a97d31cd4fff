"""The committed snapshots are what the migrations build, and they ship with the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from probe.cli import main as probe_main
from schema.catalog import read_catalog
from schema.model import Column, Index, Schema, Table
from schema.snapshot import SnapshotError, dumps_snapshot, load_snapshot, parse_snapshot, snapshot_path
from scripts.schema_snapshots import build_snapshots
from tests.conftest import Database
from tests.fixtures.expected_schema import migrations_up_to
from tests.migrator.conftest import MIGRATIONS, REPO, migrator_env, run_inprocess
from tests.probe.conftest import probe_env
from tests.schema.conftest import VERSIONS


def test_every_committed_snapshot_matches_what_the_migrations_build(database: Database) -> None:
    built = dict(build_snapshots(database.url, read_catalog(MIGRATIONS)))
    committed = {v: snapshot_path(MIGRATIONS, v).read_text(encoding="utf-8") for v in VERSIONS}
    stale = sorted(v for v in built if built[v] != committed.get(v))
    assert not stale, f"snapshots {stale} no longer match the migrations: run `make schema`"
    assert sorted(built) == VERSIONS


def test_each_migration_has_a_snapshot_and_each_snapshot_a_migration() -> None:
    assert [m.version for m in read_catalog(MIGRATIONS).migrations] == VERSIONS


def test_a_snapshot_round_trips_through_its_file_text(snapshots: dict[int, Schema]) -> None:
    for version, schema in snapshots.items():
        assert parse_snapshot("x.json", dumps_snapshot(version, schema)) == (version, schema)


def test_the_wheel_ships_the_snapshots_beside_the_sql(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("kata_migrations/snapshots/")}
        assert shipped == {f"kata_migrations/snapshots/{v:04d}.json" for v in VERSIONS}
        assert "schema/drift.py" in archive.namelist()


def test_a_missing_snapshot_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"0003\.json.*`make schema`"):
        load_snapshot(tmp_path, 3)
    assert load_snapshot(tmp_path, 0) == Schema()


def test_a_malformed_or_misnumbered_snapshot_is_refused(tmp_path: Path) -> None:
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "0001.json").write_text('{"version": 1, "tables": 3}')
    lacking = r"/0001\.json' is malformed: the document lacks the key 'extensions'"
    with pytest.raises(SnapshotError, match=lacking):
        load_snapshot(tmp_path, 1)
    (tmp_path / "snapshots" / "0002.json").write_text(dumps_snapshot(7, Schema()))
    with pytest.raises(SnapshotError, match="says version 7, expected 2"):
        load_snapshot(tmp_path, 2)


def test_a_snapshot_that_is_not_utf8_is_a_snapshot_error_exit_2_in_both_programs(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = migrations_up_to(tmp_path, 1)
    (directory / "snapshots" / "0001.json").write_bytes(b"\xff\xfe")
    with pytest.raises(SnapshotError, match=r"0001\.json' is not UTF-8 text.*make schema"):
        load_snapshot(directory, 1)
    outcome = run_inprocess(["verify"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 2, outcome.stderr
    assert "not UTF-8" in outcome.stderr
    for name, value in probe_env(database.url, directory).items():
        monkeypatch.setenv(name, value)
    assert probe_main([]) == 2


def test_a_snapshot_written_from_objects_built_in_code_reads_back(tmp_path: Path) -> None:
    # An Index built without `ordering` (a hand-written snapshot in a test) sorts every key
    # ascending, and its file passes the strict reading.
    index = Index("a", "a_id_idx", "btree", ("id",), ("int4_ops",), False)
    assert index.ordering == ("",)
    schema = Schema(tables=(Table("a", (Column("id", "integer", True, None),)),), indexes=(index,))
    assert parse_snapshot("x.json", dumps_snapshot(1, schema)) == (1, schema)
