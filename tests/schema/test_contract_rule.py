"""The expand/contract rule, checked in CI without a database: a migration whose snapshot removes or
changes what the previous version's snapshot holds (an object an older image's code may need) must
say `-- migrate: contract`, so that shipping it is a decision and not an accident
(docs/migrator.md, "Expand, then contract")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from schema.catalog import read_catalog
from schema.drift import compare
from schema.model import Schema, Table
from schema.snapshot import dumps_snapshot, load_snapshots, snapshot_path
from tests.fixtures.expected_schema import migrations_up_to
from tests.migrator.conftest import MIGRATIONS
from tests.schema.conftest import LATEST


def unmarked_contract_steps(directory: Path) -> list[str]:
    """One line per migration N+1 whose snapshot breaks snapshot N without `-- migrate: contract`."""
    catalog = read_catalog(directory)
    snapshots = load_snapshots(directory, [m.version for m in catalog.migrations])
    found = []
    for before, after in zip(catalog.migrations, catalog.migrations[1:], strict=False):
        removed = compare(snapshots[before.version], snapshots[after.version])
        if removed and not after.contract:
            objects = ", ".join(f"{d.kind} {d.object}" for d in removed)
            found.append(f"{after.filename} removes or changes {objects} without `-- migrate: contract`")
    return found


def test_every_shipped_migration_that_breaks_the_previous_snapshot_says_contract() -> None:
    assert unmarked_contract_steps(MIGRATIONS) == []


def without_column(schema: Schema, table: str, column: str) -> Schema:
    tables = tuple(
        replace(t, columns=tuple(c for c in t.columns if c.name != column)) if t.name == table else t
        for t in schema.tables
    )
    return replace(schema, tables=tables)


def without_index(schema: Schema, name: str) -> Schema:
    return replace(schema, indexes=tuple(i for i in schema.indexes if i.name != name))


STEPS = [
    pytest.param(
        "DROP INDEX messages_deleted_at_idx;\n",
        lambda s: without_index(s, "messages_deleted_at_idx"),
        "index messages_deleted_at_idx",
        id="index",
    ),
    pytest.param(
        "ALTER TABLE messages DROP COLUMN tool_name;\n",
        lambda s: without_column(s, "messages", "tool_name"),
        "column messages.tool_name",
        id="column",
    ),
]


def newer(tmp_path: Path, header: str, sql: str, shrink: Callable[[Schema], Schema]) -> Path:
    """This repository's migrations plus the next version, whose snapshot is the latest one shrunk by
    `shrink`."""
    directory = migrations_up_to(tmp_path, LATEST)
    version = LATEST + 1
    (directory / f"{version:04d}_shrink.sql").write_text(header + sql)
    [latest] = load_snapshots(directory, [LATEST]).values()
    snapshot_path(directory, version).write_text(dumps_snapshot(version, shrink(latest)))
    return directory


@pytest.mark.parametrize(("sql", "shrink", "named"), STEPS)
def test_a_migration_that_drops_what_the_previous_snapshot_holds_fails_the_rule_without_contract(
    tmp_path: Path, sql: str, shrink: Callable[[Schema], Schema], named: str
) -> None:
    directory = newer(tmp_path, "", sql, shrink)
    assert unmarked_contract_steps(directory) == [
        f"{LATEST + 1:04d}_shrink.sql removes or changes {named} without `-- migrate: contract`"
    ]


@pytest.mark.parametrize(("sql", "shrink", "named"), STEPS)
def test_the_same_migration_passes_the_rule_once_it_says_contract(
    tmp_path: Path, sql: str, shrink: Callable[[Schema], Schema], named: str
) -> None:
    directory = newer(tmp_path, "-- migrate: no-transaction\n-- migrate: contract\n", sql, shrink)
    assert unmarked_contract_steps(directory) == []


def test_an_expand_step_needs_no_directive(tmp_path: Path) -> None:
    def grow(schema: Schema) -> Schema:
        return replace(schema, tables=(*schema.tables, Table("labels", ())))

    assert unmarked_contract_steps(newer(tmp_path, "", "CREATE TABLE labels ();\n", grow)) == []
