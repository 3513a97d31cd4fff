"""The schema check: the ledger against this image's migrations, and the live catalog against the
snapshot of the version the application runs on.

Which snapshot: the ledger's version, capped at this image's latest. While migrations are pending
the snapshot of what is applied (the pending files are reported as pending, not as missing
objects). During a rolling upgrade the ledger is ahead of an old pod's image: the old pod compares
with its own latest snapshot, which is what its application code needs. An object a newer
migration added is extra and ignored; an object the old code needs that a newer migration changed
or dropped is real drift for that pod (breaking: it cannot serve; degraded: it stays ready and the
alert names it), which expand-then-contract migrations never cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from probe.check import Check, CheckFailed, CheckResult, Recorder, Snapshot, Verdict
from schema.catalog import Catalog
from schema.drift import BREAKING, DEGRADED, Drift
from schema.expected import ExpectedSchema
from schema.ledger import TABLE_NAME as LEDGER_TABLE_NAME
from schema.ledger import LedgerShapeError
from schema.live import read_live_schema
from schema.verdicts import read_state

DRIFT_CLASSES: Final = (BREAKING, DEGRADED)


@dataclass(frozen=True)
class SchemaFinding:
    """The schema check's finding: the ledger against this image's migrations, and the drift of
    the live catalog from the snapshot last compared (`compared` is that snapshot's version; None
    before the first comparison or without snapshots)."""

    version: int
    expected: int
    pending: int
    changed: tuple[int, ...]
    ahead: tuple[int, ...]
    drift: tuple[Drift, ...] = ()
    compared: int | None = None

    def of_class(self, class_: str) -> list[Drift]:
        return [d for d in self.drift if d.class_ == class_]


class SchemaCheck(Check[SchemaFinding]):
    """Ready when every migration of this image is applied, none changed since, and the catalog
    holds everything the application needs (degraded drift is reported, not failed: a missing
    index must not take every pod out of the Service).

    Versions the database has and this image lacks are reported, not failed: during a rolling
    upgrade the new Job migrates first, and the old pods must stay ready until replaced.
    """

    name = "schema"

    def __init__(self, catalog: Catalog, compare_every: int = 1) -> None:
        self._catalog = catalog
        self._expected = ExpectedSchema.of(catalog)
        self._compare_every = max(1, compare_every)
        # ((snapshot version, pending versions), drift) of the last comparison, and rounds since:
        # the catalog query is the round's most expensive one, so it runs every `compare_every`
        # rounds, and at once when the ledger moved (a migration ran).
        self._last: tuple[tuple[int, tuple[int, ...]], tuple[Drift, ...]] | None = None
        self._rounds_since = 0

    async def run(self, conn: asyncpg.Connection) -> SchemaFinding:
        try:
            state = await read_state(conn, self._catalog)
        except LedgerShapeError as exc:  # names only columns and types: no driver text
            raise CheckFailed(
                f"ledger of the wrong shape: {'; '.join(exc.problems)}", self._unreadable(exc)
            ) from exc
        target = min(state.version, self._catalog.latest_version)
        compared, drift = await self._drift(conn, target, state.pending)
        found = SchemaFinding(
            version=state.version,
            expected=self._catalog.latest_version,
            pending=len(state.pending),
            changed=tuple(state.changed),
            ahead=tuple(state.ahead),
            drift=drift,
            compared=compared,
        )
        if found.changed:
            raise CheckFailed(
                f"changed file: migration {found.changed[0]} changed since it was applied", found
            )
        breaking = found.of_class(BREAKING)
        if breaking:
            raise CheckFailed(f"breaking drift: {summary(breaking)}", found)
        if found.pending:
            raise CheckFailed(f"{found.pending} pending", found)
        return found

    def _unreadable(self, exc: LedgerShapeError) -> SchemaFinding:
        """A ledger that cannot be read is breaking drift of the ledger table itself: the schema
        metrics and the breaking-drift alert say so, where the last round's values would stay."""
        problem = f"has the wrong shape: {'; '.join(exc.problems)}"
        drift = Drift(LEDGER_TABLE_NAME, "table", BREAKING, problem)
        latest = self._catalog.latest_version
        return SchemaFinding(version=0, expected=latest, pending=0, changed=(), ahead=(), drift=(drift,))

    async def _drift(
        self, conn: asyncpg.Connection, target: int, pending: tuple[int, ...]
    ) -> tuple[int | None, tuple[Drift, ...]]:
        if self._expected is None or target == 0:
            return None, ()
        self._rounds_since += 1
        key = (target, pending)
        if self._last is not None and self._last[0] == key and self._rounds_since < self._compare_every:
            return target, self._last[1]
        drift = self._expected.drift(target, await read_live_schema(conn), pending)
        self._last, self._rounds_since = (key, drift), 0
        return target, drift

    def note(self, found: SchemaFinding) -> str:
        degraded = found.of_class(DEGRADED)
        return f"degraded drift: {summary(degraded)}" if degraded else ""

    def body(
        self, verdict: Verdict, found: SchemaFinding | None, snapshot: Snapshot | None
    ) -> dict[str, Any]:
        if found is None:
            return {"status": "current" if verdict.ok else "unknown"}
        if verdict.ok:
            status = "degraded" if found.drift else "current"
        else:
            status = "drift" if found.changed or found.of_class(BREAKING) else "pending"
        counts = {"version": found.version, "expected": found.expected, "pending": found.pending}
        return {"status": status, **counts, "drift": [d.to_json() for d in found.drift]}

    def metrics(self, registry: CollectorRegistry) -> Recorder:
        version = Gauge(
            "kata_db_schema_version", "Highest migration version applied to the database", registry=registry
        )
        expected = Gauge(
            "kata_db_schema_expected_version",
            "Highest migration version this image ships (kata_db_schema_version should reach it)",
            registry=registry,
        )
        pending = Gauge(
            "kata_db_schema_pending_migrations",
            "Migrations of this image not yet applied to the database",
            registry=registry,
        )
        drift = Gauge(
            "kata_db_schema_drift_objects",
            "Objects of the expected schema missing or different in the live catalog, by class",
            ["class"],
            registry=registry,
        )
        for class_ in DRIFT_CLASSES:
            drift.labels(class_)

        def record(result: CheckResult[SchemaFinding]) -> None:
            if result.found is not None:
                version.set(result.found.version)
                expected.set(result.found.expected)
                pending.set(result.found.pending)
                for class_ in DRIFT_CLASSES:
                    drift.labels(class_).set(len(result.found.of_class(class_)))

        return record


def summary(drift: list[Drift]) -> str:
    """The first object and how many more: a readiness line stays one line."""
    more = f" (and {len(drift) - 1} more)" if len(drift) > 1 else ""
    return f"{drift[0].kind} {drift[0].object} {drift[0].problem}{more}"
