"""The live schema judged against the snapshots before the ledger is trusted: `up`, `verify` and
`status` compare it with the snapshot of the ledger's version, `baseline N` with snapshot N, and a
database whose application tables have no ledger is named as such."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from migrator.errors import BaselineUnsatisfied, SchemaDrift, UnrecordedSchema
from migrator.events import EventLog
from schema.catalog import Catalog
from schema.drift import Drift
from schema.drizzle import DRIZZLE_LEDGER, DrizzleLedger, find_drizzle_ledger
from schema.expected import ExpectedSchema
from schema.live import read_live_schema
from schema.verdicts import SchemaState


@dataclass(frozen=True)
class Unrecorded:
    """Application tables and no ledger row: another tool (drizzle-kit) made this schema."""

    tables: tuple[str, ...]
    satisfied: int
    drizzle: DrizzleLedger | None
    # When it satisfies no version: what it lacks of the first one, and the file that creates each.
    lacking: tuple[str, ...] = ()

    def advice(self) -> str:
        if self.satisfied:
            return f"run `kata-migrate baseline {self.satisfied}`, then `kata-migrate up`"
        return (
            "it satisfies no version's snapshot: bring it to the application's current schema first"
            " (`kata-migrate status` lists what it lacks)"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "tables": list(self.tables),
            "satisfies": self.satisfied,
            "drizzle": {"ledger": DRIZZLE_LEDGER, "migrations": self.drizzle.migrations}
            if self.drizzle
            else None,
            "advice": self.advice(),
            "lacking": list(self.lacking),
        }


@dataclass(frozen=True)
class LiveReport:
    """The live schema against the snapshot of `version` (the ledger's)."""

    checked: bool
    version: int
    drift: tuple[Drift, ...] = ()
    lines: tuple[str, ...] = ()
    unrecorded: Unrecorded | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "version": self.version,
            "drift": [d.to_json() for d in self.drift],
            "unrecorded": self.unrecorded.to_json() if self.unrecorded else None,
        }


async def inspect(conn: asyncpg.Connection, catalog: Catalog, state: SchemaState) -> LiveReport:
    """One catalog read (plus drizzle's ledger when no migration is recorded)."""
    expected = ExpectedSchema.of(catalog)
    if expected is None:
        return LiveReport(checked=False, version=state.version)
    live = await read_live_schema(conn)
    if not state.applied:
        tables = expected.application_tables(live)
        if not tables:
            return LiveReport(checked=True, version=0)
        drizzle = await find_drizzle_ledger(conn)
        satisfied = expected.satisfied(live)
        first = min(expected.snapshots, default=0)
        lacking = () if satisfied else tuple(expected.explain(expected.drift(first, live)))
        return LiveReport(True, 0, unrecorded=Unrecorded(tuple(tables), satisfied, drizzle, lacking))
    drift = expected.drift(state.version, live, state.pending)
    return LiveReport(True, state.version, drift, tuple(expected.explain(drift)))


def require_conformance(report: LiveReport, command: str, log: EventLog) -> None:
    """SchemaDrift or UnrecordedSchema (exit 6) unless the live schema keeps the ledger's promise."""
    if not report.checked:
        log.warning(
            "schema_unchecked",
            "the migrations directory has no snapshots/ (run `make schema`): the live schema is not checked",
        )
        return
    if report.unrecorded:
        u = report.unrecorded
        raise UnrecordedSchema(u.tables, u.drizzle.describe() if u.drizzle else None, u.advice(), u.lacking)
    if report.drift:
        raise SchemaDrift(report.version, report.lines, command=command)
    log.info(
        "schema_verified", "the live schema holds what the applied migrations create", version=report.version
    )


async def check_baseline(conn: asyncpg.Connection, catalog: Catalog, up_to: int, log: EventLog) -> None:
    """BaselineUnsatisfied (exit 6) naming each missing object and its file unless the live schema
    satisfies snapshot `up_to`. Hand-written migrations without snapshots promise nothing that could
    be checked: recorded with a warning, as `up` and `verify` do (the shipped ones always have them)."""
    expected = ExpectedSchema.of(catalog)
    if expected is None:
        require_conformance(LiveReport(checked=False, version=up_to), "baseline", log)
        return
    live = await read_live_schema(conn)
    drift = expected.drift(up_to, live)
    if drift:
        raise BaselineUnsatisfied(up_to, expected.explain(drift), expected.satisfied(live))
    log.info("baseline_checked", f"the live schema satisfies snapshot {up_to}", version=up_to)
