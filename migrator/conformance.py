"""The live schema judged against the snapshots, and what each verb does about it: `up`, `wait`,
`verify` and `status` compare it with the snapshot of the ledger's version (this image's latest when
the ledger is ahead of it), `up` again after applying, `baseline N` with snapshot N, and a database
whose application tables have no ledger is named as such. The one place these decisions live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.drift_errors import (
    AppliedSchemaDrift,
    BaselineUnsatisfied,
    SchemaContracted,
    SchemaDrift,
    UnrecordedSchema,
    newer_migration,
)
from migrator.events import EventLog
from schema.catalog import Catalog
from schema.drift import BREAKING, DEGRADED, Drift
from schema.drizzle import DRIZZLE_LEDGER, DrizzleLedger, find_drizzle_ledger
from schema.expected import ExpectedSchema
from schema.live import read_live_schema
from schema.verdicts import SchemaState, ahead_files

# Which drift stops each verb. `verify` and `status --exit-code` answer "is the schema what the
# migrations promise?", so any drift. `up` and `wait` stop only on a schema the application cannot
# run on (breaking); a missing or INVALID index or constraint (degraded) is a `schema_degraded`
# warning naming `kata-migrate repair`: one dropped index must not block every later deploy, nor keep
# the pods of a release from starting.
STOPPED_BY: Final[Mapping[str, frozenset[str]]] = {
    "up": frozenset({BREAKING}),
    "wait": frozenset({BREAKING}),
    "verify": frozenset({BREAKING, DEGRADED}),
    "status": frozenset({BREAKING, DEGRADED}),
    # Only reached with nothing applied or no snapshots, where there is no drift to judge.
    "repair": frozenset({BREAKING, DEGRADED}),
}


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
    """The live schema against the snapshot of `version` (the ledger's), or, when the ledger is
    ahead of this image (`ahead`: the newer files, as the ledger names them), against this image's
    latest (`compared`): what this image's code needs."""

    checked: bool
    version: int
    drift: tuple[Drift, ...] = ()
    lines: tuple[str, ...] = ()
    unrecorded: Unrecorded | None = None
    ahead: tuple[str, ...] = ()
    compared: int | None = None

    @property
    def snapshot(self) -> int:
        """The version whose snapshot the live schema was compared with."""
        return self.version if self.compared is None else self.compared

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "version": self.version,
            "compared": self.snapshot,
            "ahead": list(self.ahead),
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
    lines = tuple(expected.explain(drift))
    compared = min(state.version, catalog.latest_version)
    return LiveReport(True, state.version, drift, lines, ahead=tuple(ahead_files(state)), compared=compared)


def note_ledger_ahead(catalog: Catalog, state: SchemaState, log: EventLog) -> None:
    """A ledger ahead of this image (a rollback, or an old pod during a rolling update) is no drift:
    said once per verb, naming the newer files as the ledger recorded them."""
    if not state.ahead:
        return
    files = ahead_files(state)
    log.info(
        "ledger_ahead",
        f"the database was migrated past this image: {', '.join(files)} applied by a newer image (this "
        f"image ships versions up to {catalog.latest_version}); not drift: this image runs on it as long "
        "as the live schema holds what its own migrations create",
        ahead=files,
        latest=catalog.latest_version,
    )


def require_conformance(report: LiveReport, command: str, log: EventLog) -> None:
    """SchemaDrift, SchemaContracted (a ledger ahead) or UnrecordedSchema (exit 6) when the live
    schema breaks the promise in a way that stops `command` (STOPPED_BY); a `schema_degraded`
    warning for drift that does not."""
    if not report.checked:
        log.warning(
            "schema_unchecked",
            "the migrations directory has no snapshots/ (run `make schema`): the live schema is not checked",
        )
        return
    if report.unrecorded:
        u = report.unrecorded
        raise UnrecordedSchema(u.tables, u.drizzle.describe() if u.drizzle else None, u.advice(), u.lacking)
    if any(d.class_ in STOPPED_BY[command] for d in report.drift):
        if report.ahead:
            raise SchemaContracted(report.snapshot, report.ahead, report.lines, command=command)
        raise SchemaDrift(report.version, report.lines, command=command, drift=report.drift)
    if report.drift:
        warn_degraded(report, log)
        return
    log.info(
        "schema_verified",
        f"the live schema holds what migrations 1..{report.snapshot} create",
        version=report.snapshot,
    )


def warn_degraded(report: LiveReport, log: EventLog) -> None:
    """Drift the application runs on (slower, or with fewer guarantees), named object by object."""
    if report.ahead:
        advice = (
            f"the ledger is ahead of this image: a newer migration ({newer_migration(report.ahead)}) "
            "removed or changed them; roll forward rather than run `kata-migrate repair` from this image, "
            "which would put back what that migration removed"
        )
    else:
        advice = "run `kata-migrate repair` to restore them"
    log.warning(
        "schema_degraded",
        f"the live schema lacks or changed {len(report.drift)} object(s) migrations 1..{report.snapshot} "
        f"create, which the application runs without (slower, or with fewer guarantees): "
        f"{'; '.join(report.lines)}; {advice}",
        objects=[d.object for d in report.drift],
        version=report.snapshot,
    )


async def require_applied_conformance(
    conn: asyncpg.Connection,
    catalog: Catalog,
    before: LiveReport,
    version: int,
    applied: Sequence[str],
    log: EventLog,
) -> None:
    """After `up` applied `applied`: AppliedSchemaDrift (exit 6) when the live schema lacks what
    snapshot `version` holds and the drift stops `up` (breaking) or was not there before the run
    (`before`: the report that let the run start). Catches a file that put its objects elsewhere (a
    search_path) or does not create what its snapshot promises, while the run is still in the log."""
    expected = ExpectedSchema.of(catalog)
    if expected is None:
        return  # `schema_unchecked` was said before the run
    drift = expected.drift(version, await read_live_schema(conn))
    compared = min(version, catalog.latest_version)
    if any(d.class_ in STOPPED_BY["up"] or d not in before.drift for d in drift):
        raise AppliedSchemaDrift(compared, applied, expected.explain(drift))
    if not drift:
        log.info(
            "schema_verified", f"the live schema holds what migrations 1..{compared} create", version=compared
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
