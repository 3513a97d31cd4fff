"""What a catalog's migrations promise the catalog holds: their snapshots, and a live schema judged
against them. The migrator and the probe ask the same questions through this one object."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from schema.catalog import Catalog
from schema.drift import Drift, compare, explain, introduced_by, satisfied_version
from schema.model import Schema
from schema.snapshot import load_snapshots


@dataclass(frozen=True)
class ExpectedSchema:
    """The snapshot of every version of a catalog, and the file that makes each version."""

    snapshots: Mapping[int, Schema]
    files: Mapping[int, str]

    @classmethod
    def of(cls, catalog: Catalog) -> ExpectedSchema | None:
        """The snapshot of every migration of the catalog; None when the migrations directory has
        no snapshots/ at all: hand-written migrations nobody ran `make schema` for promise nothing
        that could be checked (the callers warn `schema_unchecked`). Where snapshots/ exists, every
        version must have its file: SnapshotError (exit 2) names the missing ones, or the first
        that is unreadable or malformed."""
        if catalog.directory is None:
            return None
        snapshots = load_snapshots(catalog.directory, [m.version for m in catalog.migrations])
        if snapshots is None:
            return None
        return cls(snapshots, {m.version: m.filename for m in catalog.migrations})

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
