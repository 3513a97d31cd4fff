"""`make schema`: write migrations/snapshots/NNNN.json, the schema that migrations 1..N create.

Each snapshot is read back from a real PostgreSQL 16 with pgvector (the wheel's), after
`kata-migrate up` applied files 1..N to one fresh database: the migrator's own preflight and
runner, so the snapshot is what an operator's database holds. `--check` writes nothing and
exits 1 naming each snapshot that no longer matches the migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import asyncpg

from localpg.throwaway import running_server, wheel_bin_dir
from schema.catalog import Catalog, read_catalog
from schema.ledger import TABLE_NAME as LEDGER_TABLE_NAME
from schema.live import read_live_schema
from schema.model import Extension, Schema
from schema.pgvector import minimum_text
from schema.snapshot import dumps_snapshot, snapshot_dir, snapshot_path

REPO: Final = Path(__file__).resolve().parent.parent
MIGRATIONS: Final = REPO / "migrations"
# The migrator's ledger lives beside the application's tables but is not the application's.
LEDGER: Final = frozenset({LEDGER_TABLE_NAME})


def expected_extensions(live: Schema) -> tuple[Extension, ...]:
    """The installed pgvector's version is this machine's; the snapshot promises the minimum."""
    minimum = minimum_text()
    return tuple(Extension(e.name, minimum) if e.name == "vector" else e for e in live.extensions)


async def read_expected(url: str) -> Schema:
    conn = await asyncpg.connect(url)
    try:
        live = (await read_live_schema(conn)).without_tables(LEDGER)
    finally:
        await conn.close()
    return replace(live, extensions=expected_extensions(live))


def apply_up_to(url: str, catalog: Catalog, version: int, workdir: Path) -> None:
    """`kata-migrate up` with only files 1..version present; the earlier ones are already applied."""
    subset = workdir / f"upto-{version:04d}"
    subset.mkdir()
    for migration in catalog.migrations:
        if migration.version <= version:
            shutil.copy(MIGRATIONS / migration.filename, subset / migration.filename)
    # A separate process, as an operator runs it (scripts/ does not import the migrator).
    env = {**os.environ, "DATABASE_URL": url, "MIGRATIONS_DIR": str(subset), "MIGRATOR_LOG_FORMAT": "text"}
    env.pop("DATABASE_URL_UNPOOLED", None)
    done = subprocess.run([sys.executable, "-m", "migrator", "up"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kata-migrate up failed at version {version}:\n{done.stderr}")


def build_snapshots(url: str, catalog: Catalog) -> Iterator[tuple[int, str]]:
    """(version, file text) for each migration, applying them one by one to the empty database `url`."""
    with tempfile.TemporaryDirectory(prefix="kata-snapshots-") as workdir:
        for migration in catalog.migrations:
            apply_up_to(url, catalog, migration.version, Path(workdir))
            schema = asyncio.run(read_expected(url))
            yield migration.version, dumps_snapshot(migration.version, schema)


def write_snapshots(built: dict[int, str]) -> None:
    """Write what changed, and remove snapshots whose migration is gone."""
    for version, text in built.items():
        path = snapshot_path(MIGRATIONS, version)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"schema: wrote {path.relative_to(REPO)}")
    for name in orphaned_snapshots(built):
        (snapshot_dir(MIGRATIONS) / name).unlink()
        print(f"schema: removed {name} (no migration has that version)")


def stale_snapshots(built: dict[int, str]) -> list[str]:
    """Snapshot files that differ from what the migrations build, are absent, or have no migration."""
    stale = [
        path.name
        for version, text in built.items()
        if not (path := snapshot_path(MIGRATIONS, version)).is_file()
        or path.read_text(encoding="utf-8") != text
    ]
    return stale + orphaned_snapshots(built)


def orphaned_snapshots(built: dict[int, str]) -> list[str]:
    directory = snapshot_dir(MIGRATIONS)
    found = directory.glob("*.json") if directory.is_dir() else ()
    return sorted(p.name for p in found if not p.stem.isdigit() or int(p.stem) not in built)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare with the committed files only")
    args = parser.parse_args(argv)
    catalog = read_catalog(MIGRATIONS)
    with running_server(wheel_bin_dir(16)) as server:
        built = dict(build_snapshots(server.url(server.create_database("snapshots")), catalog))
    if args.check:
        stale = stale_snapshots(built)
        if stale:
            print(f"schema: out of date: {', '.join(stale)}; run `make schema`", file=sys.stderr)
            return 1
    else:
        write_snapshots(built)
    print(f"schema: {len(built)} snapshot(s) match the migrations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
