"""The steps that restore a constraint without blocking writes: a CHECK or FOREIGN KEY added NOT
VALID and validated apart, a NOT VALID one validated, a UNIQUE or PRIMARY KEY attached to a unique
index built CONCURRENTLY (a brief lock, no scan). Each step can be re-run from its top."""

from __future__ import annotations

import re
from typing import Final

from schema.ledger import quote_literal
from schema.model import Constraint, Index, Schema
from schema.quoting import quote_ident
from schema.restore_indexes import drop_index_sql, move_aside_sql
from schema.restore_step import KEY_KINDS, Step, aside_name, do_block, name_taken, qualified, relation_named

KEY_DEFINITION: Final = re.compile(
    r"(?P<kind>UNIQUE|PRIMARY KEY)(?P<nulls> NULLS NOT DISTINCT)? \((?P<columns>[^()]+)\)"
    r"(?: INCLUDE \((?P<include>[^()]+)\))?(?P<deferral>(?: DEFERRABLE| INITIALLY DEFERRED)*)"
)


def constraint_step(constraint: Constraint, live: Schema, namespace: str) -> Step | str:
    table = qualified(namespace, constraint.table)
    matches = [c for c in live.constraints if c.same_definition(constraint)]
    if matches:  # present but NOT VALID: only the scan is missing
        validate = f"ALTER TABLE {table} VALIDATE CONSTRAINT {quote_ident(matches[0].name)}"
        return Step(constraint.kind, constraint.name, constraint.table, "validate", (validate,))
    same_name = [c for c in live.constraints if (c.table, c.name) == (constraint.table, constraint.name)]
    if same_name:
        return name_taken(constraint.kind, constraint.name, f"{same_name[0].kind} {same_name[0].definition}")
    if constraint.kind in KEY_KINDS:
        return _key_step(constraint, live, namespace)
    name = quote_ident(constraint.name)
    # Dropping the name first makes the script re-runnable from the top (a retry after its
    # VALIDATE failed): the name was free when planned, so only this script's own NOT VALID
    # constraint can be dropped. One statement, so no write sees the table without the check.
    add = (
        f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}, "
        f"ADD CONSTRAINT {name} {constraint.definition} NOT VALID"
    )
    validate = f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}"
    return Step(constraint.kind, constraint.name, constraint.table, "add", (add, validate))


def _key_step(constraint: Constraint, live: Schema, namespace: str) -> Step | str:
    """A UNIQUE or PRIMARY KEY: its unique index built CONCURRENTLY, then attached to the table
    (`ADD CONSTRAINT ... USING INDEX`: a brief lock, no scan)."""
    parsed = KEY_DEFINITION.fullmatch(constraint.definition)
    if parsed is None:
        return (
            f"{constraint.kind} {constraint.name}: repair cannot build an index for "
            f"`{constraint.definition}`; restore it by hand"
        )
    keys = (c for c in live.constraints if (c.table, c.kind) == (constraint.table, "primary key"))
    other = next(keys, None) if constraint.kind == "primary key" else None
    if other:
        return name_taken(constraint.kind, constraint.name, f"primary key {other.name} {other.definition}")
    index = Index(
        table=constraint.table,
        name=constraint.name,
        method="btree",
        keys=tuple(k.strip() for k in parsed["columns"].split(",")),
        opclasses=(),
        unique=True,
        include=tuple(k.strip() for k in (parsed["include"] or "").split(",") if k.strip()),
    )
    create = _unique_index_sql(index, namespace, nulls_not_distinct=bool(parsed["nulls"]))
    built = _key_index(constraint.kind, index, create, live, namespace)
    if isinstance(built, str):
        return built
    attach = _attach_sql(constraint, namespace, parsed["kind"], parsed["deferral"])
    return Step(constraint.kind, constraint.name, constraint.table, "add", (*built, attach))


def _key_index(kind: str, index: Index, create: str, live: Schema, namespace: str) -> tuple[str, ...] | str:
    """What leaves a valid unique index named like the constraint: nothing when a re-run finds it
    built, else `create` after an INVALID leftover of an earlier build (of another run, or of this
    one before a lock-contention retry) is moved aside and dropped."""
    leftover = next((i for i in live.indexes if i.name == index.name), None)
    if leftover is None:
        taken = relation_named(live, index.name)
        if taken:
            return name_taken(kind, index.name, taken)
    elif not _backs(leftover, index):
        return name_taken(kind, index.name, f"index {leftover.name} ({leftover.definition()})")
    elif leftover.valid:
        return ()
    aside = aside_name(index.name)
    other = relation_named(live, aside)
    if other:
        return name_taken(kind, index.name, other, aside=aside)
    return (move_aside_sql(namespace, index.name, aside), drop_index_sql(namespace, aside), create)


def _unique_index_sql(index: Index, namespace: str, *, nulls_not_distinct: bool) -> str:
    sql = (
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(index.name)} "
        f"ON {qualified(namespace, index.table)} ({', '.join(index.keys)})"
    )
    if index.include:
        sql += f" INCLUDE ({', '.join(index.include)})"
    return sql + (" NULLS NOT DISTINCT" if nulls_not_distinct else "")


def _attach_sql(constraint: Constraint, namespace: str, kind: str, deferral: str) -> str:
    """ADD CONSTRAINT ... USING INDEX, skipped when the constraint is there already (a re-run)."""
    table = qualified(namespace, constraint.table)
    name = quote_ident(constraint.name)
    body = (
        "\nBEGIN\n"
        "    IF NOT EXISTS (\n"
        f"        SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({quote_literal(table)}) "
        f"AND conname = {quote_literal(constraint.name)}\n"
        "    ) THEN\n"
        f"        ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}{deferral};\n"
        "    END IF;\n"
        "END\n"
    )
    return do_block(body)


def _backs(index: Index, wanted: Index) -> bool:
    """A unique btree index on the wanted columns, whole-table: what the constraint can use."""
    return index.method == "btree" and index.predicate is None and _same_keys(index, wanted)


def _same_keys(index: Index, wanted: Index) -> bool:
    return (index.unique, index.keys, index.include) == (wanted.unique, wanted.keys, wanted.include)
