"""One exception class per exit code; each builds the one line an operator reads. The table of
exit codes is here and only here: `--help`, README.md and docs/migrator.md are checked against it.
The drift family of exit 6 lives in migrator/drift_errors.py, what a SQLSTATE says about the server
in migrator/sqlstates.py."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final

from migrator.sqlstates import (
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    READ_ONLY_TRANSACTION,
    resource_advice,
)
from pgconn.errors import Reason, classify_error
from schema.ledger import TABLE as LEDGER
from schema.ledger import LedgerShapeError

# code -> meaning. The docs' tables start each row with this meaning and may add detail after it.
EXIT_CODES: Final[Mapping[str, str]] = {
    "0": "success: applied, or nothing to do",
    "1": "unexpected internal error",
    "2": "usage or configuration error",
    "3": "database unreachable, authentication failed, database missing, or connection lost",
    "4": "pgvector missing, not installable by this role, or too old",
    "5": "a migration failed and was rolled back",
    "6": "changed files or drift: an applied migration changed or is missing locally, or the live schema differs from "
    "what the applied migrations promise (also: `baseline` refused)",
    "7": "timed out waiting for another migrator's lock",
    "8": "migrations pending",
    "9": "refused: pooled connection and no `DATABASE_URL_UNPOOLED`",
    "10": "insufficient privilege",
    "11": "blocked by other sessions' locks: nothing recorded, safe to retry",
    "129 / 130 / 143": "interrupted by SIGHUP / SIGINT / SIGTERM",
}


class MigratorError(Exception):
    """A run that ends with a non-zero exit code; `str()` is what happened and what to do."""

    exit_code: ClassVar[int] = 1
    event: ClassVar[str] = "failed"


class InternalError(MigratorError):
    exit_code = 1
    event = "internal_error"

    def __init__(self, exc: BaseException) -> None:
        # The type and where it was raised, never str(exc): an exception's text may quote what it
        # choked on, and that can be a password (asyncpg encoding a password that is not UTF-8).
        frames = traceback.extract_tb(exc.__traceback__)
        where = (
            f" in {frames[-1].name}() at {Path(frames[-1].filename).name}:{frames[-1].lineno}"
            if frames
            else ""
        )
        super().__init__(
            f"unexpected internal error: {type(exc).__name__}{where}; this is a bug, please report it "
            "with the log"
        )


class ReadOnlyDatabase(MigratorError):
    """default_transaction_read_only is on (for the database, the role or the server): a setting an
    administrator changes, which no retry does. A hot standby is waited for instead (exit 3)."""

    exit_code = 2
    event = "read_only_database"

    REFUSED: ClassVar[str] = (
        "the server refused a write of the migrator's own (SQLSTATE 25006): the session became read-only "
        "while it ran (default_transaction_read_only turned on by ALTER SYSTEM and a reload, or the server "
        "became a standby); what this run recorded before stays recorded. Check `SHOW "
        "default_transaction_read_only` and `SELECT pg_is_in_recovery()` on the server, then run again"
    )


class UsageError(MigratorError):
    """Arguments, settings or migration files are unusable (raised before any connection), or the
    database lacks the schema the migrator works in."""

    exit_code = 2
    event = "usage_error"


class DatabaseUnreachable(MigratorError):
    exit_code = 3
    event = "database_unreachable"

    ADVICE: ClassVar[Mapping[str, str]] = {
        Reason.AUTHENTICATION: "check the user and password in the URL (the Secret); not retried",
        Reason.DATABASE_MISSING: "create the database or fix the database name in the URL",
        Reason.TLS: (
            "check the URL's sslmode and sslrootcert against the server's certificate (its CA, and for "
            "verify-full the host name) and that the server has TLS on; not retried"
        ),
        Reason.HOT_STANDBY: (
            "`up` and `baseline` need the primary: point DATABASE_URL_UNPOOLED (or DATABASE_URL) at it. "
            "After a failover the name may lead to the old primary, now a standby, for a while: raise "
            "--connect-timeout to wait longer"
        ),
    }

    def __init__(self, target: str, reason: str, waited: float) -> None:
        self.reason = reason
        advice = self.ADVICE.get(
            reason, "check that the server is up and reachable, or raise --connect-timeout"
        )
        super().__init__(f"cannot connect to {target} after {waited:.1f} s: {reason}; {advice}")


class ConnectionLost(MigratorError):
    """The connection broke after it was made (server restart, failover, pg_terminate_backend,
    network): the server rolls back what was open, so nothing is half-applied."""

    exit_code = 3
    event = "connection_lost"

    def __init__(self, exc: BaseException, *, applying: str = "", transactional: bool = True) -> None:
        if applying:
            self.filename = applying  # for the termination message
        super().__init__(
            f"lost the database connection ({classify_error(exc)})"
            + (f" while applying {applying}: {lost_outcome(transactional=transactional)}" if applying else "")
            + "; any open transaction was rolled back by the server, run again once the database is reachable"
        )


def lost_outcome(*, transactional: bool) -> str:
    """What a connection lost in the middle of a file left behind."""
    if transactional:
        return (
            "its transaction was rolled back, nothing recorded (had the break come during its COMMIT, "
            "the file would be applied and recorded whole: `kata-migrate status` tells)"
        )
    return (
        "no-transaction file: the statements before the running one may be applied (that one too), "
        "nothing recorded; the file is written to be re-run, so a re-run is safe"
    )


class QueryFailed(MigratorError):
    """One of the migrator's own queries (not a statement of a file) was cancelled or ran short of
    the server's resources: nothing of it was recorded, and a later run may well succeed."""

    exit_code = 3
    event = "query_failed"

    CANCELLED: ClassVar[str] = (
        "cancelled by statement_timeout (the run's --statement-timeout, which the migrator sets for its "
        "own queries too) or by an administrator (pg_cancel_backend); run again, and raise "
        "--statement-timeout if the server is that slow"
    )

    BLOCKED: ClassVar[str] = (
        "it waited the run's --ddl-lock-timeout (the lock_timeout the migrator sets for its own queries "
        "too) for a lock another session holds; run again once that session is done, or raise "
        "--ddl-lock-timeout"
    )

    def __init__(self, sqlstate: str, message: str) -> None:
        advice = {QUERY_CANCELED: self.CANCELLED, LOCK_NOT_AVAILABLE: self.BLOCKED}.get(
            sqlstate, f"{message}; {resource_advice(sqlstate)}"
        )
        super().__init__(
            f"one of the migrator's own queries failed (SQLSTATE {sqlstate}), nothing of it was recorded: "
            + advice
        )


def from_database(exc: BaseException) -> MigratorError | None:
    """What an error of the server (or of the ledger's shape) means when no step foresaw it: a code
    of the contract, not exit 1. None when it is none of these."""
    if isinstance(exc, LedgerShapeError):
        return LedgerDrift(exc.problems)
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str):
        return None
    if sqlstate == READ_ONLY_TRANSACTION:
        return ReadOnlyDatabase(ReadOnlyDatabase.REFUSED)
    if sqlstate in (QUERY_CANCELED, LOCK_NOT_AVAILABLE) or resource_advice(sqlstate):
        return QueryFailed(sqlstate, str(getattr(exc, "message", None) or exc))
    return None


class PgvectorUnavailable(MigratorError):
    exit_code = 4
    event = "pgvector_unavailable"


def failure_outcome(*, transactional: bool) -> str:
    """What a file's failed statement left behind, as every failure message says it."""
    if transactional:
        return "rolled back, nothing recorded"
    return "no-transaction file: statements before this one stay applied, nothing recorded"


class MigrationFailed(MigratorError):
    exit_code = 5
    event = "migration_failed"

    # When a statement ended the file's transaction itself, rolling back cannot undo what it committed.
    ENDED: ClassVar[str] = "statements before it in this file may have been committed, nothing recorded"
    FIX: ClassVar[str] = "fix the file (or the data) and run again"

    def __init__(
        self,
        filename: str,
        line: int,
        column: int,
        message: str,
        *,
        transactional: bool,
        ended: bool = False,
        sqlstate: str | None = None,
    ) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        outcome = self.ENDED if ended else failure_outcome(transactional=transactional)
        # A full disk is the server's to fix, not the file's. Still 5, not 3: the Job must not retry
        # a build that filled the disk once (it would fill it again, and the application with it).
        advice = resource_advice(sqlstate) or self.FIX
        super().__init__(
            f"migration {filename} failed at line {line}, column {column}: {message} ({outcome}); {advice}"
        )


class LedgerDrift(MigratorError):
    """The ledger table is there but not of the shape this program reads and writes: drift of the
    record itself, which a person must look at (it says what ran), not a setting to change."""

    exit_code = 6
    event = "ledger_drift"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            f"the ledger table {LEDGER} is not one kata-migrate can read: {'; '.join(problems)}; nothing "
            "was run. It is the record of which migrations ran here: do not drop it. If another tool made "
            f"it, rename it aside (`ALTER TABLE {LEDGER} RENAME TO kata_schema_migrations_other;`), then "
            "`kata-migrate status` names the version the schema satisfies for `kata-migrate baseline`; "
            "if it is kata-migrate's and was altered, restore the columns as docs/migrator.md describes"
        )


class LockTimeout(MigratorError):
    exit_code = 7
    event = "lock_timeout"

    def __init__(self, waited: float, holder: str) -> None:
        self.holder = holder
        super().__init__(
            f"gave up after {waited:.1f} s waiting for the migration lock held by {holder}; "
            "let that migrator finish, or end it if it is stuck, then run again (or raise --lock-timeout)"
        )


class BlockedByLocks(MigratorError):
    """A migration kept timing out on locks other sessions hold until the retry budget was spent.
    Nothing of the file is recorded and the next run applies it again: retryable, unlike exit 5."""

    exit_code = 11
    event = "blocked_by_locks"

    def __init__(
        self, filename: str, line: int, attempts: int, spent: float, blockers: str, *, transactional: bool
    ) -> None:
        self.filename = filename
        self.line = line
        undone = (
            "the file was rolled back"
            if transactional
            else "the blocked statement was rolled back (a concurrent index build leaves its index INVALID, "
            "which the file moves aside when it runs again), the ones before it stay applied (the file is "
            "written to be re-run)"
        )
        super().__init__(
            f"migration {filename} blocked by other sessions' locks at line {line}: {attempts} attempt(s), "
            f"{spent:.0f} s since the first lock timeout, retry budget spent; last seen blocking: "
            f"{blockers}. {undone[0].upper()}{undone[1:]}: nothing recorded; safe to retry. End or "
            "shorten those transactions, or run again later (--lock-retry-budget retries for longer)"
        )


class MigrationsPending(MigratorError):
    exit_code = 8
    event = "migrations_pending"

    def __init__(self, pending: Sequence[str], *, waited: float | None = None) -> None:
        self.pending = tuple(pending)
        when = f" after waiting {waited:.1f} s" if waited is not None else ""
        super().__init__(
            f"{len(pending)} migration(s) pending{when}: {', '.join(pending)}; run `kata-migrate up` "
            "(the migration Job) against this database"
        )


class PoolerRefused(MigratorError):
    exit_code = 9
    event = "pooler_refused"


class RoleMissing(MigratorError):
    """MIGRATOR_APP_ROLE / MIGRATOR_PROBE_ROLE name no role (or an unusable one): a setting to fix,
    found right after connecting, before the lock and before anything is applied."""

    exit_code = 2
    event = "role_missing"


class RoleRefused(MigratorError):
    """MIGRATOR_APP_ROLE / MIGRATOR_PROBE_ROLE name a role that holds, or could take, more than
    docs/deploy.md's "Roles" table allows, in a way only an administrator can undo (a membership, an
    attribute, a grant the owner did not make): a setting or a role to fix, not a retry."""

    exit_code = 2
    event = "role_refused"

    def __init__(self, problems: Sequence[str], *, changed: bool) -> None:
        self.problems = tuple(problems)
        outcome = (
            "the migrations were applied and recorded, the grants left as they were"
            if changed
            else "nothing was changed"
        )
        super().__init__(
            f"{'; '.join(problems)}. `up` refuses such a role for the application or the probe "
            f"(docs/deploy.md, Roles); {outcome}"
        )


class InsufficientPrivilege(MigratorError):
    """The connected role lacks a privilege. A GRANT, or the right role's credentials, fixes it;
    a retry cannot, hence a code of its own (README.md says why 10)."""

    exit_code = 10
    event = "insufficient_privilege"

    def __init__(
        self, role: str, missing: Sequence[str], fix: str, *, where: str = "", advice: str = ""
    ) -> None:
        self.role = role
        self.missing = tuple(missing)
        self.fix = fix
        super().__init__(
            f"permission denied: role {role} lacks {'; '.join(missing)}{where}; "
            + (f"{advice} " if advice else "")
            + f"to fix it run {fix}"
        )


class Interrupted(MigratorError):
    """SIGHUP exits 129, SIGINT 130 and SIGTERM 143, as a shell reports a process killed by them."""

    event = "interrupted"

    def __init__(self, signal_name: str, exit_code: int, *, closed_after: float | None = None) -> None:
        self.code = exit_code
        if closed_after is None:
            super().__init__(
                f"stopped by {signal_name}: the running statement was cancelled and rolled back, the lock "
                "released; run again to continue"
            )
            return
        super().__init__(
            f"stopped by {signal_name}: the run did not end within {closed_after:g} s of the signal (a "
            "statement the server does not cancel, such as COPY waiting for data, or a server that stopped "
            "answering), so its connections were closed without waiting; the server rolls back the open "
            "transaction and releases the lock when it notices, within seconds. A file in a transaction "
            "leaves nothing; a no-transaction file keeps the statements that completed, without its ledger "
            "row (an interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index). Check with "
            "`kata-migrate status`, then run again to continue"
        )

    @property
    def status(self) -> int:
        return self.code


def exit_status(error: MigratorError) -> int:
    """The process exit code for an error: its class's, or the signal's for an interruption."""
    return error.status if isinstance(error, Interrupted) else error.exit_code
