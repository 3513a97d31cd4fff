"""One step of a restoration, and what every step does with names: qualifies them, sets an index
aside under a name PostgreSQL keeps whole, finds what in the live schema already holds a name (and
refuses to take it over), and quotes a DO block. The index steps (schema/restore_indexes.py) and
the constraint steps (schema/restore_constraints.py) build on it; schema/restore.py plans them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schema.model import Schema
from schema.quoting import quote_ident

# The longest name PostgreSQL keeps (NAMEDATALEN - 1 bytes); it would cut a longer one silently.
MAX_NAME_BYTES: Final = 63
ASIDE_SUFFIX: Final = "_invalid"
REPLACEMENT_SUFFIX: Final = "_repair"
# The constraints that own an index, which carries the constraint's name.
KEY_KINDS: Final = ("primary key", "unique constraint")


@dataclass(frozen=True)
class Step:
    """What restores one object on one table: `action` is build, rebuild, add or validate."""

    kind: str
    object: str
    table: str
    action: str
    statements: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.action} {self.kind} {self.object}"


def aside_name(name: str, suffix: str = ASIDE_SUFFIX) -> str:
    """`<name>_invalid` (or another suffix), cut so that PostgreSQL keeps it whole."""
    room = MAX_NAME_BYTES - len(suffix)
    base = name.encode()[:room].decode(errors="ignore")
    return base + suffix


def qualified(namespace: str, name: str) -> str:
    return f"{quote_ident(namespace)}.{quote_ident(name)}"


def relation_named(live: Schema, name: str) -> str | None:
    """What in the live schema holds `name` as a relation (tables and indexes share one namespace;
    a PRIMARY KEY or UNIQUE constraint's index carries the constraint's name), or None."""
    if live.table(name) is not None:
        return f"table {name}"
    index = next((i for i in live.indexes if i.name == name), None)
    if index is not None:
        return f"index {name} ({index.definition()})"
    keyed = next((c for c in live.constraints if c.name == name and c.kind in KEY_KINDS), None)
    if keyed is not None:
        return f"the index of {keyed.kind} {name} on {keyed.table}"
    return None


def name_taken(kind: str, name: str, holder: str, *, aside: str = "") -> str:
    """The refusal when `holder`, not the migrations' object, holds a name repair needs."""
    need = f"the name {aside} that repair needs beside it" if aside else f"the name {name}"
    return (
        f"{kind} {name} cannot be restored: {need} is taken by {holder}; rename or drop that object "
        "(it is not the one the migrations create), then run `kata-migrate repair` again"
    )


def do_block(body: str) -> str:
    """A DO block whose dollar quote cannot occur in its body (names may hold `$`)."""
    tag = "$kata_repair$"
    while tag in body:
        tag = tag[:-1] + "_$"
    return f"DO {tag}{body}{tag}"
