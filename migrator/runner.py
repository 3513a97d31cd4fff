"""Apply pending migrations under the lock: each file with its ledger row in one transaction."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Final

import asyncpg

from migrator import conformance, grants, lock, placement, preflight
from migrator.contention import ContentionRetry
from migrator.drift_errors import ChangedFiles
from migrator.events import EventLog
from migrator.execution import FileRunner
from migrator.guard import READ_AS_SPLIT, read_guard
from migrator.limits import RunLimits
from migrator.progress import ProgressWatcher
from migrator.settings import NO_ROLES, Roles
from schema.catalog import Catalog, Migration
from schema.ledger import BASELINE, create_ledger, insert_row_sql
from schema.rules import check_migrations
from schema.verdicts import SchemaState, changed_files, missing_files, read_state

__all__ = ["RunResult", "baseline", "migrate", "refuse_changed_files"]

# A migrator killed by SIGKILL (or on a lost node) leaves its backend running the statement and
# holding the lock; with this the server notices the dead client within seconds (PostgreSQL 14+).
CLIENT_CHECK_INTERVAL: Final = "2s"


@dataclass(frozen=True)
class RunResult:
    applied: tuple[Migration, ...]
    version: int


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def refuse_changed_files(catalog: Catalog, state: SchemaState) -> None:
    """ChangedFiles (exit 6) naming the files when an applied migration changed or vanished."""
    if state.files_changed:
        raise ChangedFiles(changed=changed_files(catalog, state), missing=missing_files(state))


@contextlib.asynccontextmanager
async def holding_lock(conn: asyncpg.Connection, timeout: float, log: EventLog) -> AsyncIterator[None]:
    """The session advisory lock for the block; released on the way out, whatever happens."""
    started = time.monotonic()

    def waiting(holder: lock.LockHolder | None) -> None:
        who = holder.describe() if holder else "another session"
        log.info(
            "lock_waiting",
            f"the migration lock is held by {who}; waiting up to {timeout:g} s",
            holder_pid=holder.pid if holder else None,
            holder_application_name=holder.application_name if holder else None,
        )

    if conn.get_server_version().major >= 14:
        with contextlib.suppress(asyncpg.PostgresError):  # a managed service may forbid it: only a nicety
            await conn.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK_INTERVAL}'")
    waited = await lock.acquire(conn, timeout, waiting)
    log.info("lock_acquired", waited=waited, wait_ms=_elapsed_ms(started))
    try:
        yield
    finally:
        # Closing the connection releases it too; unlocking first is just tidier for pg_locks.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if await lock.release(conn):
                log.info("lock_released")
            else:
                log.warning(
                    "lock_lost",
                    "this session no longer held the migration lock when it finished (a statement released "
                    "it); another migrator may have run meanwhile: check `kata-migrate status`",
                )


async def file_runner(
    conn: asyncpg.Connection,
    limits: RunLimits,
    applied_by: str,
    log: EventLog,
    watcher: ProgressWatcher | None = None,
    *,
    record: bool = True,
) -> FileRunner:
    """The session made ready to run files, for `up` and `repair` alike: the search_path pinned
    (unless the run pinned it already), the server reading text as the splitter did, and the guard
    taken from the session as it now is."""
    if limits.search_path is None:
        limits = replace(limits, search_path=await placement.pin_search_path(conn))
    await conn.execute(READ_AS_SPLIT)
    guard = await read_guard(conn, limits.ddl_lock_timeout, limits.statement_timeout)
    return FileRunner(conn, limits, guard, applied_by, log, watcher, record=record)


async def migrate(
    conn: asyncpg.Connection,
    catalog: Catalog,
    limits: RunLimits,
    applied_by: str,
    log: EventLog,
    watcher: ProgressWatcher | None = None,
    *,
    roles: Roles = NO_ROLES,
) -> RunResult:
    """`up`: under the lock, refuse changed files, then drift (the live schema against the snapshot of the
    ledger's version, as conformance decides) and forbidden statements, pin the search_path, check
    pgvector, apply every pending file in order (each retried while other sessions' locks block it
    and the retry budget lasts), then check the live schema against the snapshot of the version it
    reached."""
    started = time.monotonic()
    async with holding_lock(conn, limits.lock_timeout, log):
        state = await read_state(conn, catalog)
        refuse_changed_files(catalog, state)
        conformance.note_ledger_ahead(catalog, state, log)
        before = await conformance.inspect(conn, catalog, state)
        conformance.require_conformance(before, "up", log)
        if not state.pending:
            log.info("nothing_to_do", "the database is up to date", version=state.version)
            await grants.apply(conn, roles, log, lock_timeout=limits.ddl_lock_timeout)
            return RunResult((), state.version)
        files = catalog.by_version()
        check_migrations(files[version] for version in state.pending)
        # Before the preflight: a CREATE EXTENSION it runs lands in the ledger's schema too.
        limits = replace(limits, search_path=await placement.pin_search_path(conn))
        extension = await preflight.ensure_pgvector(conn)
        log.info("pgvector_ready", version=extension.version, created=extension.created)
        await create_ledger(conn)
        # Before the files: see migrator/grants.py.
        await grants.apply(conn, roles, log, lock_timeout=limits.ddl_lock_timeout)
        runner = await file_runner(conn, limits, applied_by, log, watcher)
        retry = ContentionRetry(limits.lock_retry_budget, log)
        applied = []
        for version in state.pending:
            migration = files[version]
            if version < state.version:
                log.warning(
                    "out_of_order",
                    f"{migration.filename} is older than the applied version {state.version}; applying it",
                    version=version,
                )
            await retry.apply(functools.partial(runner.apply, migration))
            applied.append(migration)
        await grants.apply(conn, roles, log, lock_timeout=limits.ddl_lock_timeout, after_files=bool(applied))
        version = max([state.version, *(m.version for m in applied)])
        names = [m.filename for m in applied]
        await conformance.require_applied_conformance(conn, catalog, before, version, names, log)
    log.info("migrations_applied", count=len(applied), version=version, duration_ms=_elapsed_ms(started))
    return RunResult(tuple(applied), version)


async def baseline(
    conn: asyncpg.Connection,
    catalog: Catalog,
    up_to: int,
    limits: RunLimits,
    applied_by: str,
    log: EventLog,
) -> tuple[Migration, ...]:
    """Record versions <= up_to as applied without running them (kind 'baseline'), in one transaction,
    once the live schema proved it holds what they create. Under the lock, so an `up` running at the
    same time either finished before the check or starts after the record."""
    async with holding_lock(conn, limits.lock_timeout, log):
        await placement.pin_search_path(conn)
        state = await read_state(conn, catalog)
        refuse_changed_files(catalog, state)
        await conformance.check_baseline(conn, catalog, up_to, log)
        done = {row.version for row in state.applied}
        marked = tuple(m for m in catalog.migrations if m.version <= up_to and m.version not in done)
        await create_ledger(conn)
        async with conn.transaction():
            for migration in marked:
                await conn.execute(insert_row_sql(migration, 0.0, applied_by, BASELINE))
                log.info("migration_baselined", version=migration.version, file=migration.filename)
    log.info("baseline_done", count=len(marked), up_to=up_to)
    return marked
