"""Apply one migration file: its statements one by one, each followed by the session guard, then
its ledger row; in one transaction unless the file says `-- migrate: no-transaction`."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import Final

import asyncpg

from migrator import blockers, privileges, violations
from migrator.contention import Contention, waits_for_old_transactions
from migrator.database_errors import ConnectionLost, ReadOnlyDatabase, from_database
from migrator.events import EventLog
from migrator.guard import SESSION_CHANGED, TRANSACTION_ENDED, SessionGuard
from migrator.limits import RunLimits, to_ms
from migrator.migration_errors import MigrationFailed
from migrator.progress import ProgressWatcher, SeenBlockers
from migrator.sqlstates import LOCK_NOT_AVAILABLE, READ_ONLY_TRANSACTION
from pgconn.errors import classify_error, is_connection_loss
from schema.catalog import Migration
from schema.ledger import insert_row_sql
from schema.splitter import Statement

CLOSED: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


class StatementError(Exception):
    """A statement of the file failed; carried out of the transaction so that the report is built
    after the rollback (finding a missing privilege needs a usable connection)."""

    def __init__(
        self,
        statement: Statement,
        cause: BaseException,
        *,
        shift: int = 0,
        waited: float = 0.0,
        seen: tuple[blockers.Blocker, ...] = (),
    ) -> None:
        super().__init__(str(cause))
        self.statement = statement
        self.cause = cause
        self.shift = shift  # characters sent before the statement in its query
        self.waited = waited  # seconds from sending the statement to its failure
        self.seen = seen  # who it was last seen waiting for (lock timeouts)


@dataclass(frozen=True)
class FileRunner:
    """What applying a file needs: the locked connection, the limits, the guard, the reporters.
    `record` False runs a script that is no migration (`repair`'s): no ledger row, no
    migration_started/migration_applied events, everything else as for a file."""

    conn: asyncpg.Connection
    limits: RunLimits
    guard: SessionGuard
    applied_by: str
    log: EventLog
    watcher: ProgressWatcher | None = None
    record: bool = True

    async def apply(self, migration: Migration) -> None:
        with self.log.scoped(file=migration.filename):
            if self.record:
                self.log.info(
                    "migration_started", version=migration.version, transaction=migration.transactional
                )
            started = time.monotonic()
            statements = migration.statements
            try:
                if migration.transactional:
                    await self._in_transaction(migration, statements)
                else:
                    await self._autocommit(migration, statements, started)
            except StatementError as failed:
                if is_connection_loss(failed.cause):
                    raise lost(migration, failed.cause) from failed.cause
                raise await self._report(migration, failed) from failed.cause
            except CLOSED as exc:  # BEGIN, the settings or the ledger row: not a statement of the file
                if is_connection_loss(exc):
                    raise lost(migration, exc) from exc
                # A lock timeout, a read-only server or a full disk on the migrator's own SET or
                # ledger row: the server's state, named by its code, not "fix the file" at line 1.
                raise (from_database(exc) or statement_failure(migration, Statement(0, ""), exc)) from exc
            duration = round((time.monotonic() - started) * 1000, 1)
            if self.record:
                self.log.info("migration_applied", version=migration.version, duration_ms=duration)

    async def _in_transaction(self, migration: Migration, statements: tuple[Statement, ...]) -> None:
        """One round trip per statement and none more: BEGIN and the limits ride with the first
        statement, the ledger row and COMMIT with the last; each statement is followed by the guard
        in its query (simple protocol, literals quoted here)."""
        settings = [f"SET LOCAL {s}" for s in (*self.limits.timeouts(), *self.limits.placement())]
        begin = "; ".join(["BEGIN", *settings]) + ";\n"
        row = f"{insert_row_sql(migration, None, self.applied_by)}; " if self.record else ""
        commit = f";\n{row}COMMIT"
        last = len(statements) - 1
        try:
            for index, statement in enumerate(statements):
                # The guard's "still our transaction" test needs BEGIN in an earlier query.
                check = self.guard.check_sql(transactional=index > 0)
                before = begin if index == 0 else ""
                after = commit if index == last else ""
                # A newline before the `;`: the statement may end in a `--` comment.
                query = f"{statement.text}\n;{check}{after}"
                await self._run(migration, statement, query, before=before, commits=index == last)
        except BaseException:
            with contextlib.suppress(*CLOSED):
                await self.conn.execute("ROLLBACK")
            raise

    async def _autocommit(
        self, migration: Migration, statements: tuple[Statement, ...], started: float
    ) -> None:
        """Each statement commits on its own (CREATE INDEX CONCURRENTLY must be alone in its query),
        then the guard; the ledger row only after all of them succeeded."""
        limits, build = (*self.limits.timeouts(), *self.limits.placement()), self.limits.build_settings()
        await self.conn.execute("; ".join(f"SET {s}" for s in (*limits, *build)))
        check = self.guard.check_sql(transactional=False)
        try:
            for statement in statements:
                if waits_for_old_transactions(statement.text):
                    await self._run(migration, statement, *self._concurrent(statement))
                else:
                    await self._run(migration, statement, statement.text, check)
        finally:
            # The limits (and the pinned search_path) back to the migrator's, not RESET: that would
            # bring back the role's or the database's (a statement_timeout of 1 ms) for the ledger
            # row and what follows.
            restore = [f"SET {s}" for s in limits] + [f"RESET {s.split(' = ')[0]}" for s in build]
            with contextlib.suppress(*CLOSED):
                await self.conn.execute("; ".join(restore))
        duration = round((time.monotonic() - started) * 1000, 1)
        if self.record:
            await self.conn.execute(insert_row_sql(migration, duration, self.applied_by))

    def _concurrent(self, statement: Statement) -> tuple[str, ...]:
        """A CONCURRENTLY statement waits for older transactions under SHARE UPDATE EXCLUSIVE,
        which stops no one's reads or writes: it gets its own lock_timeout, the guard after it
        expects that one, and the DDL lock timeout is set back before the next statement."""
        wait_ms = to_ms(self.limits.concurrent_wait_timeout)
        guard = replace(self.guard, lock_timeout_ms=wait_ms)
        return (
            f"SET lock_timeout = '{wait_ms}ms'",
            statement.text,
            guard.check_sql(transactional=False),
            f"SET lock_timeout = '{self.guard.lock_timeout_ms}ms'",
        )

    async def _run(
        self,
        migration: Migration,
        statement: Statement,
        *queries: str,
        before: str = "",
        commits: bool = False,
    ) -> None:
        """Run the statement's queries (`before` prefixes the first one; `commits`: they end with
        the file's COMMIT), reporting progress while they take long; an error becomes
        StatementError, positions counted from the statement."""
        line, _ = migration.lines.line_column(statement.offset)
        seen = SeenBlockers()
        sent = time.monotonic()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.watcher is not None:
                    pid = self.conn.get_server_pid()
                    watching = self.watcher.watching(pid, migration.filename, line)
                    seen = await stack.enter_async_context(watching)
                for index, query in enumerate(queries):
                    await self.conn.execute(before + query if index == 0 else query)
        except CLOSED as exc:
            waited = time.monotonic() - sent
            raise StatementError(statement, exc, shift=len(before), waited=waited, seen=seen.last) from exc
        if migration.transactional and not commits and not self.conn.is_in_transaction():
            raise MigrationFailed(
                migration.filename,
                line,
                migration.lines.line_column(statement.offset)[1],
                "the statement ended the migrator's transaction (COMMIT or ROLLBACK); check the schema",
                transactional=True,
                ended=True,
            )
        if not migration.transactional and self.conn.is_in_transaction():
            raise MigrationFailed(
                migration.filename,
                *migration.lines.line_column(statement.offset),
                "the statement left a transaction open (BEGIN) in a no-transaction file",
                transactional=False,
            )

    async def _report(self, migration: Migration, failed: StatementError) -> Exception:
        """The error for a failed statement, built after the rollback: a lock timeout is contention
        (retried), a missing privilege is explained (exit 10), a failed VALIDATE gives the query
        that finds the rows."""
        cause, statement = failed.cause, failed.statement
        if isinstance(cause, asyncpg.PostgresError) and cause.sqlstate == LOCK_NOT_AVAILABLE:
            return await self._contention(migration, failed, cause)
        if isinstance(cause, asyncpg.InsufficientPrivilegeError):
            return await privileges.in_migration(self.conn, migration, statement, cause)
        if isinstance(cause, asyncpg.PostgresError) and cause.sqlstate == READ_ONLY_TRANSACTION:
            return ReadOnlyDatabase(ReadOnlyDatabase.REFUSED)  # the server's setting, not the file
        if isinstance(cause, asyncpg.PostgresError):
            validation = violations.is_failed_validation(cause, statement.text)
            rows = await violations.rows_query(self.conn, cause) if validation else None
            return failure(migration, statement, cause, shift=failed.shift, rows_query=rows)
        return statement_failure(migration, statement, cause, shift=failed.shift)

    async def _contention(
        self, migration: Migration, failed: StatementError, cause: asyncpg.PostgresError
    ) -> Contention:
        """A lock timeout, naming who blocked: as sampled while the statement waited, else the
        transactions already open when it started (it no longer waits, so no one blocks it now)."""
        located = failure(migration, failed.statement, cause, shift=failed.shift)
        found = failed.seen or await blockers.open_before(self.conn, failed.waited)
        message = f"{getattr(cause, 'message', None) or cause} (SQLSTATE {cause.sqlstate})"
        return Contention(
            migration, located.line, message, found, seen_waiting=bool(failed.seen), waited=failed.waited
        )


def lost(migration: Migration, exc: BaseException) -> ConnectionLost:
    return ConnectionLost(exc, applying=migration.filename, transactional=migration.transactional)


def statement_failure(
    migration: Migration, statement: Statement, exc: BaseException, *, shift: int = 0
) -> MigrationFailed:
    if isinstance(exc, asyncpg.PostgresError):
        return failure(migration, statement, exc, shift=shift)
    line, column = migration.lines.line_column(statement.offset)
    return MigrationFailed(
        migration.filename, line, column, classify_error(exc), transactional=migration.transactional
    )


def failure(
    migration: Migration,
    statement: Statement,
    exc: asyncpg.PostgresError,
    *,
    shift: int = 0,
    rows_query: str | None = None,
) -> MigrationFailed:
    """Exit 5 with PostgreSQL's message and the line:column in the file (the statement's start when
    the server gives no position, or points outside the statement). The position counts characters
    of the query, which starts with `shift` characters that are not the file's. For a failed
    VALIDATE, `rows_query` finds the rows that break the constraint."""
    position = getattr(exc, "position", None)
    offset = statement.offset
    guard = exc.sqlstate in (SESSION_CHANGED, TRANSACTION_ENDED)
    within = int(position) - 1 - shift if position and str(position).isdigit() and not guard else -1
    if 0 <= within <= len(statement.text):
        offset += within
    line, column = migration.lines.line_column(offset)
    message = f"{getattr(exc, 'message', None) or exc} (SQLSTATE {exc.sqlstate})"
    detail = getattr(exc, "detail", None)
    if detail:
        message += f"; {detail}"
    hint = getattr(exc, "hint", None)
    if hint:
        message += f"; hint: {hint}"
    if rows_query:
        message += f"; find the rows that break it with: {rows_query}"
    ended = exc.sqlstate == TRANSACTION_ENDED
    return MigrationFailed(
        migration.filename,
        line,
        column,
        message,
        transactional=migration.transactional,
        ended=ended,
        sqlstate=exc.sqlstate,
    )
