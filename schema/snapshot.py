"""The expected-schema snapshots: `snapshots/NNNN.json` beside the migrations, one per version,
each describing what migrations 1..N create. `make schema` writes them; this module reads them,
strictly: the live schema is judged by them, so a file that is not exactly what `make schema`
writes is refused (exit 2, naming the file) rather than read as a weaker promise, or none."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

from pgconn.files import read_regular_file
from schema.model import MalformedSchema, Schema, json_kind, schema_from_json

SNAPSHOT_DIR: Final = "snapshots"
SNAPSHOT_NAME: Final = re.compile(r"(?P<version>[0-9]{4,})\.json")
# The largest shipped snapshot is 7 KB (two tables, 26 columns); 1 MiB holds a schema a hundred
# times larger and still parses in milliseconds, while a file copied in by mistake (a dump, a
# log) is refused before it is read into the probe's or the migrator's memory.
MAX_BYTES: Final = 1024 * 1024
# A snapshot is five levels deep (document, tables, table, columns, column); a few more still get
# their precise type error, and nothing nested deeper reaches the JSON parser's recursion.
MAX_NESTING: Final = 8
REGENERATE: Final = "regenerate the snapshots with `make schema` and ship migrations/snapshots/ with them"


class SnapshotError(ValueError):
    """A snapshot file is missing, unreadable or malformed (a packaging or `make schema` mistake: exit 2)."""


def snapshot_dir(migrations_dir: Path) -> Path:
    return migrations_dir / SNAPSHOT_DIR


def snapshot_path(migrations_dir: Path, version: int) -> Path:
    return snapshot_dir(migrations_dir) / f"{version:04d}.json"


def dumps_snapshot(version: int, schema: Schema) -> str:
    """The file text: stable key order and indentation, so a regenerated file diffs cleanly."""
    return json.dumps({"version": version, **schema.to_json()}, indent=2, sort_keys=True) + "\n"


def parse_snapshot(name: str, text: str) -> tuple[int, Schema]:
    """(version, schema) from a snapshot's text; SnapshotError naming `name` and the first defect."""
    try:
        _check_nesting(text)
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
        return _decode(data)
    except ValueError as exc:  # JSONDecodeError, MalformedSchema, an integer of 5,000 digits
        raise SnapshotError(f"schema snapshot {name!r} is malformed: {exc}; {REGENERATE}") from None


def load_snapshot(migrations_dir: Path, version: int) -> Schema:
    """Snapshot N; version 0 is the empty schema. SnapshotError naming the file when unusable."""
    if version == 0:
        return Schema()
    path = snapshot_path(migrations_dir, version)
    try:
        raw = read_regular_file(path, limit=MAX_BYTES)
    except OSError as exc:
        hint = " (a symbolic link to nothing)" if path.is_symlink() and not path.exists() else ""
        raise SnapshotError(
            f"schema snapshot {str(path)!r} cannot be read: {exc.strerror}{hint}; every migration needs "
            f"its snapshot as a regular file: {REGENERATE}"
        ) from None
    if len(raw) > MAX_BYTES:
        raise SnapshotError(
            f"schema snapshot {str(path)!r} is larger than {MAX_BYTES // 1024} KiB, which no snapshot "
            f"needs: {REGENERATE}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(
            f"schema snapshot {str(path)!r} is not UTF-8 text (byte {exc.start}): {REGENERATE}"
        ) from None
    found, schema = parse_snapshot(str(path), text)
    if found != version:
        raise SnapshotError(
            f"schema snapshot {str(path)!r} says version {found}, expected {version}: {REGENERATE}"
        )
    return schema


def load_snapshots(migrations_dir: Path, versions: list[int]) -> dict[int, Schema] | None:
    """The snapshot of every version (the catalog's), or None when there is no snapshots/ at all.

    A snapshots/ that exists must hold every one: a version without its file would otherwise be
    judged by an older promise (or, all files missing, by none) while `verify` says the schema
    was checked. SnapshotError names the missing files, or the first unusable one."""
    directory = snapshot_dir(migrations_dir)
    if not os.path.lexists(directory):
        return None
    if not directory.is_dir():
        what = "a symbolic link to nothing" if directory.is_symlink() else "not a directory"
        raise SnapshotError(f"{str(directory)!r} is {what}: it must be the folder of snapshots; {REGENERATE}")
    missing = [v for v in versions if not os.path.lexists(snapshot_path(migrations_dir, v))]
    if missing:
        names = ", ".join(snapshot_path(migrations_dir, v).name for v in missing)
        raise SnapshotError(
            f"schema snapshots missing from {str(directory)!r}: {names}; every migration needs its "
            f"snapshot, or the live schema goes unchecked: {REGENERATE}"
        )
    return {version: load_snapshot(migrations_dir, version) for version in versions}


def _decode(data: Any) -> tuple[int, Schema]:
    if not isinstance(data, dict):
        raise MalformedSchema(f"the document is {json_kind(data)}, expected an object")
    if "version" not in data:
        raise MalformedSchema("the document lacks the key 'version'")
    version = data["version"]
    # Exactly an integer: "5", 5.7 and true are no version number.
    if type(version) is not int or version < 0:
        raise MalformedSchema(f"version is {json_kind(version)}, expected a whole number of 0 or more")
    return version, schema_from_json({k: v for k, v in data.items() if k != "version"})


def _check_nesting(text: str) -> None:
    """ValueError when arrays and objects nest deeper than MAX_NESTING (strings skipped)."""
    depth = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{\]}]', text, re.DOTALL):
        if match[0] in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"arrays and objects nest more than {MAX_NESTING} deep (at {match.start()})")
        elif match[0] in ("]", "}"):
            depth -= 1


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found
