"""Apply pending migrations under the lock: each file with its ledger row in one transaction."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator import grants, lock, preflight, privileges, violations
from migrator.errors import DriftDetected, MigrationFailed
from migrator.events import EventLog
from pgconn.errors import classify_error
from schema.catalog import Catalog, Migration
from schema.ledger import BASELINE, create_ledger, insert_row_sql
from schema.splitter import Statement, line_column, split_statements
from schema.verdicts import SchemaState, changed_files, missing_files, read_state

# A migrator killed by SIGKILL (or on a lost node) leaves its backend running the statement and
# holding the lock; with this the server notices the dead client within seconds (PostgreSQL 14+).
CLIENT_CHECK_INTERVAL: Final = "2s"


@dataclass(frozen=True)
class RunOptions:
    """The limits of one run, in seconds; 0 disables a PostgreSQL timeout."""

    lock_timeout: float = 120.0
    statement_timeout: float = 3600.0
    ddl_lock_timeout: float = 10.0
    # Who `up` grants to after (and, through default privileges, while) applying.
    roles: grants.Roles = grants.NO_ROLES


@dataclass(frozen=True)
class RunResult:
    applied: tuple[Migration, ...]
    version: int


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def check_drift(catalog: Catalog, state: SchemaState) -> None:
    """DriftDetected (exit 6) naming the files when an applied migration changed or vanished."""
    if state.drifted:
        raise DriftDetected(changed=changed_files(catalog, state), missing=missing_files(state))


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
            await lock.release(conn)
            log.info("lock_released")


async def migrate(
    conn: asyncpg.Connection, catalog: Catalog, options: RunOptions, applied_by: str, log: EventLog
) -> RunResult:
    """`up`: under the lock, refuse drift, check pgvector, then apply every pending file in order."""
    started = time.monotonic()
    async with holding_lock(conn, options.lock_timeout, log):
        state = await read_state(conn, catalog)
        check_drift(catalog, state)
        if not state.pending:
            log.info("nothing_to_do", "the database is up to date", version=state.version)
            await grants.apply(conn, options.roles, log)
            return RunResult((), state.version)
        extension = await preflight.ensure_pgvector(conn)
        log.info("pgvector_ready", version=extension.version, created=extension.created)
        await create_ledger(conn)
        await grants.apply(conn, options.roles, log)  # before the files: see migrator/grants.py
        files = catalog.by_version()
        applied = []
        for version in state.pending:
            migration = files[version]
            if version < state.version:
                log.warning(
                    "out_of_order",
                    f"{migration.filename} is older than the applied version {state.version}; applying it",
                    version=version,
                )
            await apply_migration(conn, migration, options, applied_by, log)
            applied.append(migration)
        await grants.apply(conn, options.roles, log)
    version = max([state.version, *(m.version for m in applied)])
    log.info("migrations_applied", count=len(applied), version=version, duration_ms=_elapsed_ms(started))
    return RunResult(tuple(applied), version)


async def apply_migration(
    conn: asyncpg.Connection, migration: Migration, options: RunOptions, applied_by: str, log: EventLog
) -> None:
    log.info(
        "migration_started",
        version=migration.version,
        file=migration.filename,
        transaction=migration.transactional,
    )
    started = time.monotonic()
    statements = split_statements(migration.sql)
    limits = (
        f"lock_timeout = '{_ms(options.ddl_lock_timeout)}'",
        f"statement_timeout = '{_ms(options.statement_timeout)}'",
    )
    current: Statement = statements[0] if statements else Statement(0, "")
    try:
        if migration.transactional:
            # Three round trips plus one per statement: BEGIN with the limits, the statements,
            # then the ledger row with COMMIT (simple protocol, literals quoted here).
            await conn.execute("BEGIN; " + "; ".join(f"SET LOCAL {limit}" for limit in limits))
            try:
                for current in statements:
                    await conn.execute(current.text)
                duration = _elapsed_ms(started)
                await conn.execute(insert_row_sql(migration, duration, applied_by) + "; COMMIT")
            except BaseException:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.execute("ROLLBACK")
                raise
        else:
            # Outside a transaction each statement commits on its own (CREATE INDEX CONCURRENTLY
            # must be alone in its query); the ledger row comes only after all of them succeeded.
            await conn.execute("; ".join(f"SET {limit}" for limit in limits))
            try:
                for current in statements:
                    await conn.execute(current.text)
            finally:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("RESET lock_timeout; RESET statement_timeout")
            duration = _elapsed_ms(started)
            await conn.execute(insert_row_sql(migration, duration, applied_by))
    except asyncpg.InsufficientPrivilegeError as exc:
        raise await privileges.in_migration(conn, migration, current, exc) from exc
    except asyncpg.PostgresError as exc:
        validation = violations.is_failed_validation(exc, current.text)
        rows = await violations.rows_query(conn, exc) if validation else None
        raise failure(migration, current, exc, rows) from exc
    except (asyncpg.InterfaceError, OSError) as exc:
        line, column = line_column(migration.sql, current.offset)
        raise MigrationFailed(
            migration.filename, line, column, classify_error(exc), transactional=migration.transactional
        ) from exc
    log.info("migration_applied", version=migration.version, file=migration.filename, duration_ms=duration)


def failure(
    migration: Migration, statement: Statement, exc: asyncpg.PostgresError, rows_query: str | None = None
) -> MigrationFailed:
    """Exit 5 with PostgreSQL's message and the line:column in the file (the statement's start when
    the server gives no position); for a failed VALIDATE, the query that finds the rows."""
    position = getattr(exc, "position", None)
    offset = statement.offset
    if position and str(position).isdigit():
        offset += int(position) - 1
    line, column = line_column(migration.sql, offset)
    message = f"{getattr(exc, 'message', None) or exc} (SQLSTATE {exc.sqlstate})"
    detail = getattr(exc, "detail", None)
    if detail:
        message += f"; {detail}"
    hint = getattr(exc, "hint", None)
    if hint:
        message += f"; hint: {hint}"
    if rows_query:
        message += f"; find the rows that break it with: {rows_query}"
    return MigrationFailed(migration.filename, line, column, message, transactional=migration.transactional)


async def baseline(
    conn: asyncpg.Connection,
    catalog: Catalog,
    up_to: int,
    options: RunOptions,
    applied_by: str,
    log: EventLog,
) -> tuple[Migration, ...]:
    """Record versions <= up_to as applied without running them (kind 'baseline'), in one transaction."""
    async with holding_lock(conn, options.lock_timeout, log):
        state = await read_state(conn, catalog)
        check_drift(catalog, state)
        done = {row.version for row in state.applied}
        marked = tuple(m for m in catalog.migrations if m.version <= up_to and m.version not in done)
        await create_ledger(conn)
        async with conn.transaction():
            for migration in marked:
                await conn.execute(insert_row_sql(migration, 0.0, applied_by, BASELINE))
                log.info("migration_baselined", version=migration.version, file=migration.filename)
    log.info("baseline_done", count=len(marked), up_to=up_to)
    return marked
