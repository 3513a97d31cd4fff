"""The shape of a schema as plain data: what a snapshot promises and what the live catalog holds."""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any, Final, TypeVar

from schema.equivalence import canonical


@dataclass(frozen=True)
class Extension:
    """An installed extension; in a snapshot, `version` is the minimum the migrations need."""

    name: str
    version: str


@dataclass(frozen=True)
class Enum:
    # Labels keep their order: it is the enum's sort order.
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Column:
    """`type` as format_type prints it, with its typmod (`vector(1536)`), and without the schema
    of an extension's type (`extensions.vector` on Supabase); `default` as deparsed."""

    name: str
    type: str
    not_null: bool
    default: str | None

    def same_default(self, other: Column) -> bool:
        return _canonical_or_none(self.default) == _canonical_or_none(other.default)


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
        return (self.table, self.kind, canonical(self.definition)) == (
            other.table,
            other.kind,
            canonical(other.definition),
        )


# Storage parameters spelled out at their default values (`WITH (m = 16)`) build the same index as
# none: PostgreSQL's documented defaults, and pgvector's for hnsw and ivfflat.
DEFAULT_RELOPTIONS: Final = {
    "btree": frozenset({"fillfactor=90"}),
    "gist": frozenset({"fillfactor=90"}),
    "hash": frozenset({"fillfactor=75"}),
    "brin": frozenset({"pages_per_range=128"}),
    "hnsw": frozenset({"m=16", "ef_construction=64"}),
    "ivfflat": frozenset({"lists=100"}),
}
# pg_index.indoption bits 1 (DESC) and 2 (NULLS FIRST) of a key, as CREATE INDEX spells them;
# the live query prints the same words (ASC NULLS LAST, the default, is the empty string).
ORDERINGS: Final = ("", "DESC NULLS LAST", "NULLS FIRST", "DESC")


@dataclass(frozen=True)
class Index:
    """An index that backs no constraint: method, key columns or expressions with their operator
    classes and sort order, INCLUDE columns, storage parameters (`m=16` of an HNSW index),
    uniqueness and partial-index predicate."""

    table: str
    name: str
    method: str
    keys: tuple[str, ...]
    opclasses: tuple[str, ...]
    unique: bool
    predicate: str | None = None
    include: tuple[str, ...] = ()
    valid: bool = True
    ordering: tuple[str, ...] = ()
    reloptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Not given (an Index built in code): every key ascending, nulls last, as CREATE INDEX does.
        if not self.ordering:
            object.__setattr__(self, "ordering", ("",) * len(self.keys))

    def same_definition(self, other: Index) -> bool:
        return self._canonical().definition() == other._canonical().definition()

    def _canonical(self) -> Index:
        defaults = DEFAULT_RELOPTIONS.get(self.method, frozenset())
        return replace(
            self,
            predicate=_canonical_or_none(self.predicate),
            reloptions=tuple(o for o in self.reloptions if o not in defaults),
        )

    def definition(self) -> str:
        """`UNIQUE btree ON messages (context_id int8_ops DESC) WITH (fillfactor=70) WHERE ...`."""
        keys = ", ".join(
            " ".join(filter(None, parts))
            for parts in zip(self.keys, self.opclasses, self.ordering, strict=False)
        )
        text = f"{'UNIQUE ' if self.unique else ''}{self.method} ON {self.table} ({keys})"
        if self.include:
            text += f" INCLUDE ({', '.join(self.include)})"
        if self.reloptions:
            text += f" WITH ({', '.join(self.reloptions)})"
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


class MalformedSchema(ValueError):
    """A schema document that is not exactly the model's shape; the message names the field."""


def schema_from_json(data: object) -> Schema:
    """Build a Schema from `Schema.to_json()` output or the live-catalog query's JSON.

    Strict: every field of the model present, each exactly of its type (a string, true or false,
    null only where the field allows it, a list of these), and no other key: a snapshot that is not
    what `make schema` writes must not be read as a weaker promise. MalformedSchema names the first
    field that is wrong. Every list is sorted by name, so two reads of one catalog compare equal
    whatever order PostgreSQL returned them in.
    """
    schema = _decode(Schema, data, "")
    for number, index in enumerate(schema.indexes):
        if not len(index.keys) == len(index.opclasses) == len(index.ordering):
            raise MalformedSchema(f"indexes[{number}]: keys, opclasses and ordering differ in length")
    return Schema(
        extensions=tuple(sorted(schema.extensions, key=lambda e: e.name)),
        enums=tuple(sorted(schema.enums, key=lambda e: e.name)),
        tables=tuple(
            sorted(
                (Table(t.name, tuple(sorted(t.columns, key=lambda c: c.name))) for t in schema.tables),
                key=lambda t: t.name,
            )
        ),
        constraints=tuple(sorted(schema.constraints, key=lambda c: (c.table, c.name))),
        indexes=tuple(
            sorted(
                (replace(i, reloptions=tuple(sorted(i.reloptions))) for i in schema.indexes),
                key=lambda i: (i.table, i.name),
            )
        ),
    )


Decoded = TypeVar("Decoded")


def _decode(cls: type[Decoded], data: object, where: str) -> Decoded:
    """One dataclass from a JSON object with exactly its fields; their types come from the class."""
    if not isinstance(data, dict):
        raise MalformedSchema(f"{where or 'the document'} is {json_kind(data)}, expected an object")
    assert is_dataclass(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise MalformedSchema(
            f"{where or 'the document'} has the unknown key {unknown[0]!r} (its keys: {', '.join(names)})"
        )
    missing = [name for name in names if name not in data]
    if missing:
        raise MalformedSchema(f"{where or 'the document'} lacks the key {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    values = {name: _value(hints[name], data[name], prefix + name) for name in names}
    return cls(**values)


def _value(hint: Any, value: object, where: str) -> object:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is str:
        return _text(value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise MalformedSchema(f"{where} is {json_kind(value)}, expected true or false")
        return value
    if origin is types.UnionType and set(args) == {str, type(None)}:
        return None if value is None else _text(value, where)
    if origin is tuple and args[1:] == (Ellipsis,):
        if not isinstance(value, list):
            raise MalformedSchema(f"{where} is {json_kind(value)}, expected a list")
        return tuple(_value(args[0], item, f"{where}[{n}]") for n, item in enumerate(value))
    if isinstance(hint, type) and is_dataclass(hint):
        return _decode(hint, value, where)
    raise TypeError(f"schema_from_json cannot decode a field of type {hint!r}")  # a new model field


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedSchema(f"{where} is {json_kind(value)}, expected a string")
    # A lone surrogate (`"\ud800"`) or NUL is no name or text PostgreSQL could hold, and could
    # not even be written to a log.
    if "\x00" in value or not _encodable(value):
        raise MalformedSchema(f"{where} holds a NUL character or a lone surrogate: not text")
    return value


def _encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_kind(value: object) -> str:
    """What a JSON value is, for a message: `a string`, `the number 5.7`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}" if abs(value) < 1e15 else "a number"
    kinds: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _canonical_or_none(expression: str | None) -> str | None:
    return None if expression is None else canonical(expression)
