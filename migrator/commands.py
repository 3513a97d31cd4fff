"""What each verb of `kata-migrate` does: thin functions over the library, each returning 0 or
raising the MigratorError that names its exit code. Their names, help and settings are their records
in migrator/verbs.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import asyncpg

from migrator import conformance, grants, repair, session
from migrator.connection import direct_url, read_url
from migrator.context import Context
from migrator.drift_errors import BaselineRefused
from migrator.migration_errors import MigrationsPending
from migrator.progress import ProgressWatcher
from migrator.runner import RunResult, baseline, migrate, refuse_changed_files
from migrator.status import status_document, status_text
from migrator.termination import Outcome
from pgconn.errors import classify_error, is_connection_loss
from schema.catalog import Catalog
from schema.ledger import has_tables
from schema.rules import check_migrations
from schema.splitter import LINE_BREAK
from schema.verdicts import SchemaState, pending_files, read_state

WAIT_INTERVAL: Final = 1.0
T = TypeVar("T")


def result_document(result: RunResult) -> dict[str, object]:
    """`up --json`: what this run applied and the version the schema is at now."""
    return {"applied": [m.filename for m in result.applied], "version": result.version}


async def cmd_up(ctx: Context) -> int:
    url = direct_url(ctx.settings.database)
    conn = await ctx.connect(url)
    watcher = ProgressWatcher(lambda: ctx.connect(url), ctx.log)
    settings = ctx.settings
    try:
        await grants.check_roles(conn, settings.roles, ctx.log)
        result = await migrate(
            conn, ctx.catalog, settings.limits, ctx.application_name, ctx.log, watcher, roles=settings.roles
        )
    finally:
        await watcher.close()
        await conn.close()
    ctx.outcome = Outcome(tuple(m.filename for m in result.applied), result.version)
    if ctx.settings.as_json:
        ctx.print_json(result_document(result))
    return 0


async def cmd_baseline(ctx: Context) -> int:
    version = ctx.settings.baseline_version
    assert version is not None  # the settings require it for this command
    conn = await ctx.connect(direct_url(ctx.settings.database))
    try:
        # Checked before the lock, and still safe against a racing `up`: tables only ever appear,
        # and `up` commits them with their ledger rows, which baseline then skips.
        if not await has_tables(conn):
            raise BaselineRefused(version)
        await baseline(conn, ctx.catalog, version, ctx.settings.limits, ctx.application_name, ctx.log)
    finally:
        await conn.close()
    return 0


async def cmd_status(ctx: Context) -> int:
    state, live = await ctx.read_state_and_live()
    if ctx.settings.as_json:
        ctx.print_json(status_document(ctx.catalog, state, live))
    else:
        ctx.stdout.write(status_text(ctx.catalog, state, live))
    conformance.note_ledger_ahead(ctx.catalog, state, ctx.log)
    if ctx.settings.exit_code:
        refuse_changed_files(ctx.catalog, state)
        conformance.require_conformance(live, "status", ctx.log)
        raise_if_pending(ctx.catalog, state)
    return 0


async def cmd_repair(ctx: Context) -> int:
    url = direct_url(ctx.settings.database)
    conn = await ctx.connect(url)
    watcher = ProgressWatcher(lambda: ctx.connect(url), ctx.log)
    try:
        await repair.repair(conn, ctx.catalog, ctx.settings.limits, ctx.application_name, ctx.log, watcher)
    finally:
        await watcher.close()
        await conn.close()
    return 0


async def cmd_plan(ctx: Context) -> int:
    if ctx.settings.repair:
        return await plan_repair(ctx)
    state = await ctx.read_state()
    refuse_changed_files(ctx.catalog, state)
    conformance.note_ledger_ahead(ctx.catalog, state, ctx.log)
    files = ctx.catalog.by_version()
    check_migrations(files[version] for version in state.pending)
    for version in state.pending:
        migration = files[version]
        mode = "in its own transaction" if migration.transactional else "outside a transaction"
        contract = ", a contract step" if migration.contract else ""
        ctx.stdout.write(f"-- {migration.filename} (version {version}, {mode}{contract})\n")
        # A bare CR ends a line for PostgreSQL: print it as one, so what shows is what runs.
        ctx.stdout.write(LINE_BREAK.sub("\n", migration.sql).rstrip("\n") + "\n\n")
    ctx.log.info("plan", pending=len(state.pending), version=state.version)
    return 0


async def plan_repair(ctx: Context) -> int:
    """`plan --repair`: the statements `repair` would run now, on stdout; touches nothing."""
    async with ctx.reading() as conn:
        plan = await repair.read_plan(conn, ctx.catalog, await read_state(conn, ctx.catalog), ctx.log)
    plan.announce(ctx.log)
    ctx.stdout.write(plan.restoration.script())
    event = "repair_plan" if plan.steps else "nothing_to_repair"
    ctx.log.info(event, version=plan.version, count=len(plan.steps), objects=plan.objects)
    return 0


async def cmd_verify(ctx: Context) -> int:
    state, live = await ctx.read_state_and_live()
    refuse_changed_files(ctx.catalog, state)
    conformance.note_ledger_ahead(ctx.catalog, state, ctx.log)
    conformance.require_conformance(live, "verify", ctx.log)
    raise_if_pending(ctx.catalog, state)
    ctx.outcome = Outcome(version=state.version)
    schema = (
        "and the live schema holds what they create"
        if live.checked
        else "but the live schema was not checked (no snapshots/ beside the migrations)"
    )
    ctx.log.info("verified", f"every migration is applied and unchanged, {schema}", version=state.version)
    return 0


async def cmd_wait(ctx: Context) -> int:
    started = time.monotonic()
    deadline = started + ctx.settings.wait_timeout
    poller = Poller(ctx)
    try:
        announced = False
        while True:
            state = await poller.read_state()
            refuse_changed_files(ctx.catalog, state)
            if not state.pending:
                break
            if time.monotonic() >= deadline:
                raise_if_pending(ctx.catalog, state, waited=time.monotonic() - started)
            if not announced:
                ctx.log.info("waiting", pending=len(state.pending), timeout_s=ctx.settings.wait_timeout)
                announced = True
            await asyncio.sleep(min(WAIT_INTERVAL, max(0.0, deadline - time.monotonic())))
        # Once, when nothing is pending: the pods this init container guards need the schema too.
        conformance.note_ledger_ahead(ctx.catalog, state, ctx.log)
        live = await poller.inspect(state)
        conformance.require_conformance(live, "wait", ctx.log)
    finally:
        await poller.close()
    ctx.outcome = Outcome(version=state.version)
    ctx.log.info("ready", version=state.version, waited_ms=round((time.monotonic() - started) * 1000, 1))
    return 0


@dataclass
class Poller:
    """`wait`'s one connection, opened again when the server closes it between two polls
    (idle_session_timeout, a pooler's idle timeout, a failover): only a reconnect that fails
    within --connect-timeout ends the wait (exit 3), or a connection lost before its first read."""

    ctx: Context
    conn: asyncpg.Connection | None = None

    async def read_state(self) -> SchemaState:
        return await self._read(lambda conn: read_state(conn, self.ctx.catalog))

    async def inspect(self, state: SchemaState) -> conformance.LiveReport:
        return await self._read(lambda conn: conformance.inspect(conn, self.ctx.catalog, state))

    async def _read(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        while True:
            fresh = self.conn is None
            conn = self.conn = self.conn or await self.ctx.connect(read_url(self.ctx.settings.database))
            try:
                async with session.reading(conn, self.ctx.settings.limits):
                    return await query(conn)
            except Exception as exc:
                if fresh or not is_connection_loss(exc):
                    raise
                self.ctx.log.info(
                    "reconnecting",
                    f"the server closed the session between two polls ({classify_error(exc)}); reconnecting",
                    reason=classify_error(exc),
                )
                await self.close()

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self.conn.close()
            self.conn = None


def raise_if_pending(catalog: Catalog, state: SchemaState, *, waited: float | None = None) -> None:
    if state.pending:
        raise MigrationsPending(pending_files(catalog, state), waited=waited)
