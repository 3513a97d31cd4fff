"""The statements that restore degraded drift while the application keeps writing: indexes built
CONCURRENTLY, constraints added NOT VALID and validated apart. Pure: from the expected and the live
schema to SQL text, which `kata-migrate repair` runs and `plan --repair` prints.

Breaking drift (a table, column, type, enum label or extension) is never restored: that would
invent data or guess a type. A name the live schema already uses for something else is not taken
over. Both are reported as refusals, and nothing is planned while there is one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from schema.drift import DEGRADED, Drift
from schema.ledger import SCHEMA, quote_literal
from schema.model import Constraint, Index, Schema
from schema.quoting import is_column, quote_ident

# The longest name PostgreSQL keeps (NAMEDATALEN - 1 bytes); it would cut a longer one silently.
MAX_NAME_BYTES: Final = 63
ASIDE_SUFFIX: Final = "_invalid"
REPLACEMENT_SUFFIX: Final = "_repair"
# Steps run in this order: an index-backed key before a FOREIGN KEY that may reference it.
ORDER: Final = ("primary key", "unique constraint", "foreign key", "check constraint", "index")
KEY_DEFINITION: Final = re.compile(
    r"(?P<kind>UNIQUE|PRIMARY KEY)(?P<nulls> NULLS NOT DISTINCT)? \((?P<columns>[^()]+)\)"
    r"(?: INCLUDE \((?P<include>[^()]+)\))?(?P<deferral>(?: DEFERRABLE| INITIALLY DEFERRED)*)"
)


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


@dataclass(frozen=True)
class Restoration:
    """The steps that restore the degraded drift, or why repair will not run."""

    steps: tuple[Step, ...] = ()
    breaking: tuple[Drift, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.breaking or self.conflicts)

    def script(self) -> str:
        """Every step as one no-transaction script, a comment line before each: what `plan
        --repair` prints and `repair` runs, statement by statement (so its line numbers match)."""
        blocks = [
            "\n".join([f"-- {step.describe()}", *(f"{sql};" for sql in step.statements)])
            for step in self.steps
        ]
        return "\n\n".join(blocks) + "\n" if blocks else ""


def plan_restoration(
    expected: Schema, live: Schema, drifts: Iterable[Drift], namespace: str = SCHEMA
) -> Restoration:
    """The steps that restore each degraded drift of `live` against `expected` (the snapshot the
    drift was found with); breaking drift and taken names refuse the whole plan."""
    drifts = tuple(drifts)
    breaking = tuple(d for d in drifts if d.class_ != DEGRADED)
    steps: list[Step] = []
    conflicts: list[str] = []
    for drift in drifts:
        if drift.class_ != DEGRADED:
            continue
        planned = _plan_one(drift, expected, live, namespace)
        if isinstance(planned, Step):
            steps.append(planned)
        else:
            conflicts.append(planned)
    if breaking or conflicts:
        return Restoration(breaking=breaking, conflicts=tuple(conflicts))
    steps.sort(key=lambda s: (ORDER.index(s.kind) if s.kind in ORDER else len(ORDER), s.action == "validate"))
    return Restoration(steps=tuple(steps))


def _plan_one(drift: Drift, expected: Schema, live: Schema, namespace: str) -> Step | str:
    if drift.kind == "index":
        index = next((i for i in expected.indexes if i.name == drift.object), None)
        if index is not None:
            return _index_step(index, live, namespace)
    else:
        found = (c for c in expected.constraints if (c.kind, c.name) == (drift.kind, drift.object))
        constraint = next(found, None)
        if constraint is not None:
            return _constraint_step(constraint, live, namespace)
    return f"{drift.kind} {drift.object}: repair cannot restore it ({drift.problem}); restore it by hand"


# --- indexes ---------------------------------------------------------------------------------


def _index_step(index: Index, live: Schema, namespace: str) -> Step | str:
    """A missing index is built; an INVALID one (an interrupted concurrent build) is moved aside
    and dropped concurrently first, as 0002 and 0005 do, so `IF NOT EXISTS` does not skip it.
    A missing one gets the same first statements, which do nothing until then: a build the run's
    lock-contention retry interrupted leaves an INVALID index, and the retry runs the script again
    from its top. INVALID copies under other names (a leftover already moved aside) go first."""
    invalid = [i for i in live.indexes if i.same_definition(index) and not i.valid]
    names = {i.name for i in invalid}
    if not invalid and any(_retuned(i, index) for i in live.indexes):
        return _replace_index_step(index, live, namespace)
    taken = None if index.name in names else relation_named(live, index.name)
    if taken:
        return _taken("index", index.name, taken)
    statements = [drop_index_sql(namespace, i.name) for i in invalid if i.name != index.name]
    aside = aside_name(index.name)
    other = None if aside in names else relation_named(live, aside)
    if other:
        return _taken("index", index.name, other, aside=aside)
    statements += [move_aside_sql(namespace, index.name, aside), drop_index_sql(namespace, aside)]
    action = "rebuild" if invalid else "build"
    return Step("index", index.name, index.table, action, (*statements, create_index_sql(index, namespace)))


def create_index_sql(index: Index, namespace: str, *, name: str | None = None) -> str:
    """CREATE INDEX CONCURRENTLY IF NOT EXISTS from the model: keys with their operator classes and
    sort order, INCLUDE, storage parameters (an HNSW index's `m`) and predicate. `name` builds it
    under another name (a replacement built beside the index it replaces)."""
    pairs = itertools.zip_longest(
        index.keys, index.opclasses[: len(index.keys)], index.ordering[: len(index.keys)], fillvalue=""
    )
    keys = ", ".join(_key(key, opclass, order) for key, opclass, order in pairs)
    unique = "UNIQUE " if index.unique else ""
    sql = (
        f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(name or index.name)} "
        f"ON {qualified(namespace, index.table)} USING {quote_ident(index.method)} ({keys})"
    )
    if index.include:
        sql += f" INCLUDE ({', '.join(index.include)})"
    if index.reloptions:
        sql += f" WITH ({', '.join(index.reloptions)})"
    return sql + (f" WHERE {index.predicate}" if index.predicate else "")


def _retuned(live: Index, wanted: Index) -> bool:
    """The index of that name, on the same columns by the same method, built otherwise (sort order,
    operator class, HNSW parameters): ours, to be rebuilt. An index of that name on other columns
    or by another method is somebody else's, and its name is refused as taken."""
    same = (live.name, live.table, live.method, live.keys) == (
        wanted.name,
        wanted.table,
        wanted.method,
        wanted.keys,
    )
    return same and not live.same_definition(wanted)


def _replace_index_step(index: Index, live: Schema, namespace: str) -> Step | str:
    """An index of the right name defined differently (another sort order, other HNSW parameters):
    its replacement is built CONCURRENTLY beside it, the old one dropped CONCURRENTLY, and the
    replacement renamed into its place (a rename locks only the index). The first statement clears
    a replacement left by an interrupted run, so the steps can be re-run from the top."""
    beside = aside_name(index.name, REPLACEMENT_SUFFIX)
    other = relation_named(live, beside)
    if other:
        return _taken("index", index.name, other, aside=beside)
    statements = (
        drop_index_sql(namespace, beside),
        create_index_sql(index, namespace, name=beside),
        drop_index_sql(namespace, index.name),
        f"ALTER INDEX {qualified(namespace, beside)} RENAME TO {quote_ident(index.name)}",
    )
    return Step("index", index.name, index.table, "rebuild", statements)


def move_aside_sql(namespace: str, name: str, aside: str) -> str:
    """Rename the index out of the way only while it is INVALID: renaming locks only the index,
    where a DROP INDEX inside a DO block would take ACCESS EXCLUSIVE on its table. Re-run once the
    index is valid, it does nothing."""
    target = qualified(namespace, name)
    body = (
        "\nBEGIN\n"
        "    IF EXISTS (\n"
        f"        SELECT 1 FROM pg_index WHERE indexrelid = to_regclass({quote_literal(target)}) "
        "AND NOT indisvalid\n"
        "    ) THEN\n"
        f"        ALTER INDEX {target} RENAME TO {quote_ident(aside)};\n"
        "    END IF;\n"
        "END\n"
    )
    return do_block(body)


def drop_index_sql(namespace: str, name: str) -> str:
    return f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(namespace, name)}"


def aside_name(name: str, suffix: str = ASIDE_SUFFIX) -> str:
    """`<name>_invalid` (or another suffix), cut so that PostgreSQL keeps it whole."""
    room = MAX_NAME_BYTES - len(suffix)
    base = name.encode()[:room].decode(errors="ignore")
    return base + suffix


def _key(key: str, opclass: str, order: str = "") -> str:
    """A column as it is, an expression in the parentheses CREATE INDEX needs; then its opclass and
    sort order (`DESC`, `NULLS FIRST`: PostgreSQL's own words, from the model)."""
    text = key if is_column(key) else f"({key})"
    return " ".join(filter(None, (text, quote_ident(opclass) if opclass else "", order)))


# --- constraints -----------------------------------------------------------------------------


def _constraint_step(constraint: Constraint, live: Schema, namespace: str) -> Step | str:
    table = qualified(namespace, constraint.table)
    matches = [c for c in live.constraints if c.same_definition(constraint)]
    if matches:  # present but NOT VALID: only the scan is missing
        validate = f"ALTER TABLE {table} VALIDATE CONSTRAINT {quote_ident(matches[0].name)}"
        return Step(constraint.kind, constraint.name, constraint.table, "validate", (validate,))
    same_name = [c for c in live.constraints if (c.table, c.name) == (constraint.table, constraint.name)]
    if same_name:
        return _taken(constraint.kind, constraint.name, f"{same_name[0].kind} {same_name[0].definition}")
    if constraint.kind in ("primary key", "unique constraint"):
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
        return _taken(constraint.kind, constraint.name, f"primary key {other.name} {other.definition}")
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
            return _taken(kind, index.name, taken)
    elif not _backs(leftover, index):
        return _taken(kind, index.name, f"index {leftover.name} ({leftover.definition()})")
    elif leftover.valid:
        return ()
    aside = aside_name(index.name)
    other = relation_named(live, aside)
    if other:
        return _taken(kind, index.name, other, aside=aside)
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


# --- names -----------------------------------------------------------------------------------


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
    keyed = next((c for c in live.constraints if c.name == name and c.kind in ORDER[:2]), None)
    if keyed is not None:
        return f"the index of {keyed.kind} {name} on {keyed.table}"
    return None


def _taken(kind: str, name: str, holder: str, *, aside: str = "") -> str:
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
