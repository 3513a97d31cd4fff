"""What a catalog's migrations promise the catalog holds: their snapshots, and a live schema judged
against them. The migrator and the probe ask the same questions through this one object."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from schema.catalog import Catalog
from schema.drift import Drift, compare, explain, introduced_by, satisfied_version
from schema.model import Schema
from schema.snapshot import load_snapshots, snapshot_dir, snapshot_path


@dataclass(frozen=True)
class ExpectedSchema:
    """The snapshot of every version of a catalog, and the file that makes each version."""

    snapshots: Mapping[int, Schema]
    files: Mapping[int, str]

    @classmethod
    def of(cls, catalog: Catalog) -> ExpectedSchema | None:
        """Every snapshot of the catalog (SnapshotError when one is malformed); None when the
        migrations directory has no snapshots/ at all: hand-written migrations nobody ran
        `make schema` for promise nothing that could be checked. A version without its file (a
        migration added by hand) is judged by the snapshot before it: its own objects go
        unchecked rather than the whole run refused (tests/schema guards the shipped files)."""
        if catalog.directory is None or not snapshot_dir(catalog.directory).is_dir():
            return None
        directory = catalog.directory
        versions = [m.version for m in catalog.migrations if snapshot_path(directory, m.version).is_file()]
        files = {m.version: m.filename for m in catalog.migrations}
        return cls(load_snapshots(directory, versions), files)

    @property
    def latest(self) -> int:
        return max(self.snapshots, default=0)

    def at(self, version: int) -> Schema:
        """The schema migrations 1..version create; an unknown version (a ledger ahead of this
        image) is judged by the newest snapshot this image has."""
        known = [v for v in self.snapshots if v <= version]
        return self.snapshots[max(known)] if known else Schema()

    def drift(self, version: int, live: Schema, pending: Collection[int] = ()) -> tuple[Drift, ...]:
        """What `live` lacks of snapshot `version`, less the objects a `pending` migration creates:
        snapshot N is built by applying 1..N, so with 1, 2 and 4 applied and 3 pending, the objects
        of 3 are not drift but still to come."""
        drifts = compare(self.at(version), live)
        if not pending:
            return drifts
        return tuple(d for d in drifts if introduced_by(self.snapshots, d) not in pending)

    def explain(self, drifts: tuple[Drift, ...]) -> list[str]:
        return explain(drifts, self.snapshots, self.files)

    def satisfied(self, live: Schema) -> int:
        """The highest version whose snapshot the live schema fully satisfies (0 for none)."""
        return satisfied_version(self.snapshots, live)

    def application_tables(self, live: Schema) -> list[str]:
        """The tables of this image's schema that the live schema already holds."""
        return sorted(t.name for t in self.at(self.latest).tables if live.table(t.name) is not None)
