"""The ledger against the catalog: which versions are applied, pending, changed, missing or ahead of
this image. A changed or missing file is a *changed file*; "drift" is the live catalog's alone
(schema/drift.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from schema.catalog import Catalog
from schema.ledger import APPLIED, AppliedMigration, read_ledger


@dataclass(frozen=True)
class SchemaState:
    """The ledger compared with a catalog: what is applied, pending, changed or missing, and the
    applied versions above this image's latest (`ahead`: a newer image migrated this database, and
    this one is a rollback or an old pod of a rolling update; not a changed file)."""

    applied: tuple[AppliedMigration, ...]
    pending: tuple[int, ...]
    changed: tuple[int, ...]
    missing: tuple[int, ...]
    ahead: tuple[int, ...] = ()

    @property
    def version(self) -> int:
        """The highest applied version, 0 for an empty or absent ledger."""
        return max((row.version for row in self.applied), default=0)

    @property
    def files_changed(self) -> bool:
        """An applied migration's file changed since, or is gone: the history differs."""
        return bool(self.changed or self.missing)


def state_of(catalog: Catalog, applied: tuple[AppliedMigration, ...]) -> SchemaState:
    """Each version's verdict, without I/O. A baseline row records the file's checksum too, but its
    SQL never ran here (another tool made that schema), so a later edit of the file changes nothing
    in this database: only rows of kind 'applied' can change.

    A version above this image's latest is ahead, whatever its kind: a newer image's file this one
    never shipped. A version at or below it without a file is missing: this image's history
    differs from the database's (a file deleted or renumbered), a changed file as well."""
    files = catalog.by_version()
    done = {row.version: row for row in applied}
    changed = tuple(
        v
        for v, row in done.items()
        if v in files and row.kind == APPLIED and row.checksum != files[v].checksum
    )
    latest = catalog.latest_version
    ahead = tuple(v for v in done if v > latest)
    missing = tuple(v for v, row in done.items() if v not in files and v <= latest and row.kind == APPLIED)
    pending = tuple(v for v in files if v not in done)
    return SchemaState(applied=applied, pending=pending, changed=changed, missing=missing, ahead=ahead)


def changed_files(catalog: Catalog, state: SchemaState) -> list[str]:
    """The file names of the applied migrations whose text changed since."""
    files = catalog.by_version()
    return [files[v].filename for v in state.changed]


def missing_files(state: SchemaState) -> list[str]:
    """The applied migrations no file here has any more, by the file name the ledger recorded."""
    rows = {row.version: row for row in state.applied}
    return [rows[v].describe() for v in state.missing]


def ahead_files(state: SchemaState) -> list[str]:
    """The applied versions above this image's latest, by the file name the ledger recorded."""
    rows = {row.version: row for row in state.applied}
    return [rows[v].describe() for v in state.ahead]


def pending_files(catalog: Catalog, state: SchemaState) -> list[str]:
    files = catalog.by_version()
    return [files[v].filename for v in state.pending]


async def read_state(conn: asyncpg.Connection, catalog: Catalog) -> SchemaState:
    return state_of(catalog, await read_ledger(conn))
