"""The shape of a schema as plain data: what a snapshot promises and what the live catalog holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Extension:
    """An installed extension; in a snapshot, `version` is the minimum the migrations need."""

    name: str
    version: str


@dataclass(frozen=True)
class Enum:
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Column:
    """`type` as format_type prints it, with its typmod (`vector(1536)`); `default` as deparsed."""

    name: str
    type: str
    not_null: bool
    default: str | None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Constraint:
    """A PRIMARY KEY, FOREIGN KEY, UNIQUE or CHECK constraint; `definition` is PostgreSQL's own
    deparse (pg_get_constraintdef) without NOT VALID, so spelling and names do not matter."""

    table: str
    name: str
    kind: str
    definition: str
    validated: bool = True

    def same_definition(self, other: Constraint) -> bool:
        return (self.table, self.kind, self.definition) == (other.table, other.kind, other.definition)


@dataclass(frozen=True)
class Index:
    """An index that backs no constraint: method, key columns or expressions, their operator
    classes, INCLUDE columns, uniqueness and partial-index predicate."""

    table: str
    name: str
    method: str
    keys: tuple[str, ...]
    opclasses: tuple[str, ...]
    unique: bool
    predicate: str | None = None
    include: tuple[str, ...] = ()
    valid: bool = True

    def same_definition(self, other: Index) -> bool:
        return self.definition() == other.definition()

    def definition(self) -> str:
        """`UNIQUE btree ON messages (context_id, version) WHERE ...`: for messages and matching."""
        keys = ", ".join(f"{k} {o}" for k, o in zip(self.keys, self.opclasses, strict=False))
        text = f"{'UNIQUE ' if self.unique else ''}{self.method} ON {self.table} ({keys})"
        if self.include:
            text += f" INCLUDE ({', '.join(self.include)})"
        return text + (f" WHERE {self.predicate}" if self.predicate else "")


@dataclass(frozen=True)
class Schema:
    """Everything one PostgreSQL schema (namespace) holds that the application depends on."""

    extensions: tuple[Extension, ...] = ()
    enums: tuple[Enum, ...] = ()
    tables: tuple[Table, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    indexes: tuple[Index, ...] = ()

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def without_tables(self, names: frozenset[str]) -> Schema:
        """The same schema minus some tables and everything on them (the migrator's ledger)."""
        return Schema(
            self.extensions,
            self.enums,
            tuple(t for t in self.tables if t.name not in names),
            tuple(c for c in self.constraints if c.table not in names),
            tuple(i for i in self.indexes if i.table not in names),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data; tuples become lists when dumped."""
        return asdict(self)


def schema_from_json(data: dict[str, Any]) -> Schema:
    """Build a Schema from `Schema.to_json()` output or the live-catalog query's JSON.

    Every list is sorted by name, so two reads of one catalog compare equal whatever order
    PostgreSQL returned them in. KeyError/TypeError on a malformed document: callers that read
    files wrap it in an error naming the file.
    """
    return Schema(
        extensions=tuple(sorted((Extension(**e) for e in data["extensions"]), key=lambda e: e.name)),
        enums=tuple(sorted((_enum(e) for e in data["enums"]), key=lambda e: e.name)),
        tables=tuple(sorted((_table(t) for t in data["tables"]), key=lambda t: t.name)),
        constraints=tuple(
            sorted((Constraint(**c) for c in data["constraints"]), key=lambda c: (c.table, c.name))
        ),
        indexes=tuple(sorted((_index(i) for i in data["indexes"]), key=lambda i: (i.table, i.name))),
    )


def _enum(data: dict[str, Any]) -> Enum:
    # Labels keep their order: it is the enum's sort order.
    return Enum(data["name"], tuple(data["labels"]))


def _table(data: dict[str, Any]) -> Table:
    columns = sorted((Column(**c) for c in data["columns"]), key=lambda c: c.name)
    return Table(data["name"], tuple(columns))


def _index(data: dict[str, Any]) -> Index:
    return Index(
        **{
            **data,
            "keys": tuple(data["keys"]),
            "opclasses": tuple(data["opclasses"]),
            "include": tuple(data.get("include") or ()),
        }
    )
