"""`kata-migrate repair`: under the migration lock, restore the degraded drift of the ledger's version
(missing or INVALID indexes, missing or NOT VALID constraints) with the lock-safe statements that
schema/restore.py plans, run as a no-transaction file's statements are run but with no ledger row, then
read the catalog again. `plan --repair` prints the same statements."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator import conformance, privileges
from migrator.contention import ContentionRetry
from migrator.drift_errors import RepairIncomplete, RepairRefused
from migrator.events import EventLog
from migrator.limits import RunLimits
from migrator.progress import ProgressWatcher
from migrator.runner import file_runner, holding_lock, refuse_changed_files
from schema.catalog import Catalog, Migration, checksum
from schema.expected import ExpectedSchema
from schema.live import NAMESPACE, read_live_schema
from schema.restore import Restoration, plan_restoration
from schema.restore_step import Step
from schema.verdicts import SchemaState, ahead_files, pending_files, read_state

# What the script's statements are reported under (progress, notices, a failure's line number:
# the line of `plan --repair`'s output).
SCRIPT_NAME: Final = "repair"


@dataclass(frozen=True)
class RepairPlan:
    """The restoration of the ledger's version, and the migrations still pending beside it."""

    version: int
    restoration: Restoration
    pending: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.restoration.steps

    def script(self) -> Migration:
        """The steps as a no-transaction script FileRunner can run; never recorded in the ledger."""
        sql = self.restoration.script()
        return Migration(self.version, SCRIPT_NAME, SCRIPT_NAME, checksum(sql), transactional=False, sql=sql)

    def announce(self, log: EventLog) -> None:
        """Pending migrations: what their snapshots add is left to `up`, and the operator is told."""
        if self.pending:
            log.warning(
                "up_needed",
                f"{len(self.pending)} migration(s) pending ({', '.join(self.pending)}): repair restores what "
                "the applied ones create; run `kata-migrate up` for the rest",
                pending=list(self.pending),
            )

    @property
    def objects(self) -> list[str]:
        """`build index messages_embedding_idx`, ...: what the steps do, for the log."""
        return [step.describe() for step in self.steps]


async def read_plan(
    conn: asyncpg.Connection, catalog: Catalog, state: SchemaState, log: EventLog
) -> RepairPlan:
    """The ledger's promise against the live catalog; RepairRefused (exit 6) for a ledger ahead of
    this image, breaking drift or a taken name; ChangedFiles for a changed or missing file. With no
    migration applied (or no snapshots) nothing is promised: `up`'s judgement of the schema is given
    instead (a ledgerless schema exits 6 with the `baseline` to run)."""
    if state.ahead:
        raise RepairRefused.ledger_ahead(ahead_files(state), catalog.latest_version)
    refuse_changed_files(catalog, state)
    expected = ExpectedSchema.of(catalog)
    pending = tuple(pending_files(catalog, state))
    if expected is None or not state.applied:
        conformance.require_conformance(await conformance.inspect(conn, catalog, state), "repair", log)
        return RepairPlan(state.version, Restoration(), pending)
    live = await read_live_schema(conn)
    drifts = expected.drift(state.version, live, state.pending)
    restoration = plan_restoration(expected.at(state.version), live, drifts, NAMESPACE)
    if restoration.refused:
        breaking = expected.explain(restoration.breaking)
        raise RepairRefused.drift(state.version, breaking, restoration.conflicts)
    return RepairPlan(state.version, restoration, pending)


async def repair(
    conn: asyncpg.Connection,
    catalog: Catalog,
    limits: RunLimits,
    applied_by: str,
    log: EventLog,
    watcher: ProgressWatcher | None = None,
) -> RepairPlan:
    """Under the lock: plan, run the statements (each as a no-transaction file's), verify."""
    started = time.monotonic()
    async with holding_lock(conn, limits.lock_timeout, log):
        state = await read_state(conn, catalog)
        plan = await read_plan(conn, catalog, state, log)
        plan.announce(log)
        if not plan.steps:
            log.info(
                "nothing_to_repair",
                "the live schema holds what the applied migrations create",
                version=plan.version,
            )
            return plan
        await privileges.check_ownership(conn, "repair", NAMESPACE, sorted({s.table for s in plan.steps}))
        log.info("repair_started", version=plan.version, count=len(plan.steps), objects=plan.objects)
        # As `up`: a FOREIGN KEY's `REFERENCES contexts` and `vector_cosine_ops` resolve in public
        # and pgvector's schema, never in a role-named schema; text reads as it was split.
        runner = await file_runner(conn, limits, applied_by, log, watcher, record=False)
        # Each step can be re-run from the top of the script, as a no-transaction file's can.
        retry = ContentionRetry(limits.lock_retry_budget, log)
        await retry.apply(functools.partial(runner.apply, plan.script()))
        await verify(conn, catalog, state)
    duration = round((time.monotonic() - started) * 1000, 1)
    log.info(
        "repair_done",
        "restored; the live schema holds what the applied migrations create",
        version=plan.version,
        count=len(plan.steps),
        objects=plan.objects,
        duration_ms=duration,
    )
    return plan


async def verify(conn: asyncpg.Connection, catalog: Catalog, state: SchemaState) -> None:
    """The catalog read again: RepairIncomplete (exit 6) naming whatever still differs."""
    expected = ExpectedSchema.of(catalog)
    assert expected is not None  # a plan with steps came from the snapshots
    drifts = expected.drift(state.version, await read_live_schema(conn), state.pending)
    if drifts:
        raise RepairIncomplete(state.version, expected.explain(drifts))
