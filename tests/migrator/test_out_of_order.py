"""A pending migration below the ledger's highest version (1, 2, 4 and on applied, 3 not) is pending,
not drift: the snapshot of the highest applied version holds 3's objects, which are still to come."""

from __future__ import annotations

from tests.conftest import Database
from tests.fixtures.expected_schema import UNDO_0003
from tests.migrator.conftest import ledger, migrator_env, run_inprocess
from tests.schema.conftest import LATEST


def test_up_applies_an_out_of_order_pending_migration_instead_of_reporting_its_objects_as_drift(
    database: Database,
) -> None:
    env = migrator_env(database.url)
    assert run_inprocess(["up"], env).code == 0
    for sql in UNDO_0003:
        database.psql(sql)
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert [int(row.split("|")[0]) for row in ledger(database)] == list(range(1, LATEST + 1))
    constraint = "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%non_negative'"
    assert database.psql(constraint) == "4"
