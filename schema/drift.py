"""Compare the live schema with a snapshot: what is missing or different, and how much it matters.

Objects are matched by definition, not by name: drizzle's `contexts_parent_id_contexts_id_fk`
is our `contexts_parent_id_fkey`. Whatever the live schema holds beyond the snapshot (an extra
index, a column, a table, another schema) is not ours and is never reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from schema.model import Constraint, Enum, Extension, Index, Schema, Table
from schema.pgvector import install_advice, parse_version, update_advice

BREAKING: Final = "breaking"
DEGRADED: Final = "degraded"


@dataclass(frozen=True)
class Drift:
    """One missing or different object. `class_` is `breaking` (the application cannot run on
    it) or `degraded` (it runs, slower or with fewer guarantees)."""

    object: str
    kind: str
    class_: str
    problem: str

    def to_json(self) -> dict[str, str]:
        return {"object": self.object, "kind": self.kind, "class": self.class_, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.class_}: {self.kind} {self.object} {self.problem}"


def compare(expected: Schema, live: Schema) -> tuple[Drift, ...]:
    """Every object of `expected` that `live` lacks or holds differently; empty when satisfied."""
    return (
        *_extensions(expected.extensions, live),
        *_enums(expected.enums, live),
        *_tables(expected.tables, live),
        *_constraints(expected.constraints, live),
        *_indexes(expected.indexes, live),
    )


def satisfied_version(snapshots: Mapping[int, Schema], live: Schema) -> int:
    """The highest version whose snapshot the live schema satisfies without any drift; 0 for none.

    For a database some other tool made (drizzle-kit): the version `baseline` may record.
    """
    return max((v for v, snapshot in snapshots.items() if not compare(snapshot, live)), default=0)


def introduced_by(snapshots: Mapping[int, Schema], drift: Drift) -> int | None:
    """The first version whose snapshot holds the drifted object: the migration that creates it."""
    for version in sorted(snapshots):
        if (drift.kind, drift.object) in _identities(snapshots[version]):
            return version
    return None


def explain(
    drifts: tuple[Drift, ...], snapshots: Mapping[int, Schema], files: Mapping[int, str]
) -> list[str]:
    """One line per drift for a log or a refusal, naming the migration file that creates the object
    (`files` maps a version to its file name, as the catalog knows it). An extension is created by
    no file (the migrator's preflight creates it): its problem says how to install it instead."""
    lines = []
    for drift in drifts:
        version = None if drift.kind == "extension" else introduced_by(snapshots, drift)
        origin = f" (created by {files.get(version, f'version {version}')})" if version else ""
        lines.append(f"{drift}{origin}")
    return lines


def _identities(schema: Schema) -> set[tuple[str, str]]:
    found = {("extension", e.name) for e in schema.extensions}
    found |= {("enum", e.name) for e in schema.enums}
    found |= {("enum label", f"{e.name}.{label}") for e in schema.enums for label in e.labels}
    found |= {("table", t.name) for t in schema.tables}
    found |= {("column", f"{t.name}.{c.name}") for t in schema.tables for c in t.columns}
    found |= {(c.kind, c.name) for c in schema.constraints}
    found |= {("index", i.name) for i in schema.indexes}
    return found


def _extensions(expected: tuple[Extension, ...], live: Schema) -> Iterator[Drift]:
    installed = {e.name: e.version for e in live.extensions}
    for ext in expected:
        if ext.name not in installed:
            yield Drift(
                ext.name,
                "extension",
                BREAKING,
                f"is not installed (need {ext.version} or later; no migration creates it): "
                + install_advice("this database", ext.name),
            )
        elif parse_version(installed[ext.name]) < parse_version(ext.version):
            yield Drift(
                ext.name,
                "extension",
                BREAKING,
                f"is version {installed[ext.name]}, older than the {ext.version} the schema needs: "
                + update_advice("this database", ext.name),
            )


def _enums(expected: tuple[Enum, ...], live: Schema) -> Iterator[Drift]:
    present = {e.name: e.labels for e in live.enums}
    for enum in expected:
        if enum.name not in present:
            yield Drift(enum.name, "enum", BREAKING, f"is missing (labels {', '.join(enum.labels)})")
            continue
        missing = [label for label in enum.labels if label not in present[enum.name]]
        for label in missing:
            yield Drift(f"{enum.name}.{label}", "enum label", BREAKING, "is missing")
        # The label order is the enum's sort order: ORDER BY, <, > and range queries on the column
        # answer differently. Labels a later migration added are not ours to place.
        order = tuple(label for label in present[enum.name] if label in enum.labels)
        if not missing and order != enum.labels:
            yield Drift(
                enum.name,
                "enum",
                BREAKING,
                f"sorts its labels as {', '.join(order)}, expected {', '.join(enum.labels)} "
                "(the order of ORDER BY and comparisons on it)",
            )


def _tables(expected: tuple[Table, ...], live: Schema) -> Iterator[Drift]:
    for table in expected:
        found = live.table(table.name)
        if found is None:
            yield Drift(table.name, "table", BREAKING, "is missing")
            continue
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            actual = found.column(column.name)
            if actual is None:
                yield Drift(name, "column", BREAKING, f"is missing (expected {column.type})")
            elif actual.type != column.type:
                yield Drift(name, "column", BREAKING, f"has type {actual.type}, expected {column.type}")
            elif actual.not_null != column.not_null:
                want = "NOT NULL" if column.not_null else "nullable"
                yield Drift(name, "column", BREAKING, f"nullability differs: expected {want}")
            elif not actual.same_default(column):
                # A NOT NULL column whose default vanished fails every insert that relies on it.
                yield Drift(
                    name,
                    "column",
                    BREAKING,
                    f"has default {actual.default or 'none'}, expected {column.default or 'none'}",
                )


def _constraints(expected: tuple[Constraint, ...], live: Schema) -> Iterator[Drift]:
    for constraint in expected:
        if live.table(constraint.table) is None:
            continue  # the missing table is the problem, already reported
        matches = [c for c in live.constraints if c.same_definition(constraint)]
        if not matches:
            yield Drift(
                constraint.name,
                constraint.kind,
                DEGRADED,
                f"is missing on {constraint.table}: {constraint.definition}",
            )
        elif not any(c.validated for c in matches):
            yield Drift(
                constraint.name,
                constraint.kind,
                DEGRADED,
                f"is NOT VALID on {constraint.table} (rows written before it are unchecked): run "
                f"`kata-migrate repair` (ALTER TABLE {constraint.table} VALIDATE CONSTRAINT "
                f"{matches[0].name})",
            )


def _indexes(expected: tuple[Index, ...], live: Schema) -> Iterator[Drift]:
    for index in expected:
        if live.table(index.table) is None:
            continue
        matches = [i for i in live.indexes if i.same_definition(index)]
        namesake = next((i for i in live.indexes if (i.table, i.name) == (index.table, index.name)), None)
        if not matches and namesake is not None:
            yield Drift(
                index.name,
                "index",
                DEGRADED,
                f"is defined differently: {namesake.definition()}, expected {index.definition()}",
            )
        elif not matches:
            yield Drift(index.name, "index", DEGRADED, f"is missing: {index.definition()}")
        elif not any(i.valid for i in matches):
            yield Drift(
                index.name,
                "index",
                DEGRADED,
                f"is INVALID (an interrupted CREATE INDEX CONCURRENTLY): run `kata-migrate repair` to drop "
                f"index {matches[0].name} concurrently and rebuild it",
            )
