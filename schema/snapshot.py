"""The expected-schema snapshots: `snapshots/NNNN.json` beside the migrations, one per version,
each describing what migrations 1..N create. `make schema` writes them; this module reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from pgconn.files import read_regular_file
from schema.model import Schema, schema_from_json

SNAPSHOT_DIR: Final = "snapshots"
SNAPSHOT_NAME: Final = re.compile(r"(?P<version>[0-9]{4,})\.json")


class SnapshotError(ValueError):
    """A snapshot file is missing or unreadable (a packaging or `make schema` mistake: exit 2)."""


def snapshot_dir(migrations_dir: Path) -> Path:
    return migrations_dir / SNAPSHOT_DIR


def snapshot_path(migrations_dir: Path, version: int) -> Path:
    return snapshot_dir(migrations_dir) / f"{version:04d}.json"


def dumps_snapshot(version: int, schema: Schema) -> str:
    """The file text: stable key order and indentation, so a regenerated file diffs cleanly."""
    return json.dumps({"version": version, **schema.to_json()}, indent=2, sort_keys=True) + "\n"


def parse_snapshot(name: str, text: str) -> tuple[int, Schema]:
    try:
        data = json.loads(text)
        return int(data["version"]), schema_from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(
            f"schema snapshot {name!r} is malformed ({type(exc).__name__}: {exc}): "
            "regenerate the snapshots with `make schema`"
        ) from exc


def load_snapshot(migrations_dir: Path, version: int) -> Schema:
    """Snapshot N; version 0 is the empty schema. SnapshotError naming the file when absent."""
    if version == 0:
        return Schema()
    path = snapshot_path(migrations_dir, version)
    try:
        text = read_regular_file(path).decode("utf-8")
    except OSError as exc:
        raise SnapshotError(
            f"schema snapshot {str(path)!r} cannot be read ({exc.strerror}): every migration needs its "
            "snapshot; run `make schema` and ship migrations/snapshots/ with the migrations"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SnapshotError(
            f"schema snapshot {str(path)!r} is not UTF-8 text (byte {exc.start}): regenerate the "
            "snapshots with `make schema`"
        ) from None
    found, schema = parse_snapshot(path.name, text)
    if found != version:
        raise SnapshotError(
            f"schema snapshot {path.name!r} says version {found}, expected {version}: run `make schema`"
        )
    return schema


def load_snapshots(migrations_dir: Path, versions: list[int]) -> dict[int, Schema]:
    """Every snapshot of the given versions (the catalog's), for `satisfied_version`."""
    return {version: load_snapshot(migrations_dir, version) for version in versions}
