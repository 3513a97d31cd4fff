"""The steps that restore an index without blocking writes: a missing one built CONCURRENTLY, an
INVALID one (an interrupted concurrent build) moved aside and dropped CONCURRENTLY first, one
defined otherwise rebuilt beside itself and renamed into its place. Each step can be re-run from
its top."""

from __future__ import annotations

import itertools

from schema.ledger import quote_literal
from schema.model import Index, Schema
from schema.quoting import is_column, quote_ident
from schema.restore_step import (
    REPLACEMENT_SUFFIX,
    Step,
    aside_name,
    do_block,
    name_taken,
    qualified,
    relation_named,
)


def index_step(index: Index, live: Schema, namespace: str) -> Step | str:
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
        return name_taken("index", index.name, taken)
    statements = [drop_index_sql(namespace, i.name) for i in invalid if i.name != index.name]
    aside = aside_name(index.name)
    other = None if aside in names else relation_named(live, aside)
    if other:
        return name_taken("index", index.name, other, aside=aside)
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
        return name_taken("index", index.name, other, aside=beside)
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


def _key(key: str, opclass: str, order: str = "") -> str:
    """A column as it is, an expression in the parentheses CREATE INDEX needs; then its opclass and
    sort order (`DESC`, `NULLS FIRST`: PostgreSQL's own words, from the model)."""
    text = key if is_column(key) else f"({key})"
    return " ".join(filter(None, (text, quote_ident(opclass) if opclass else "", order)))
