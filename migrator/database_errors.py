"""The errors of the database a run was pointed at: unreachable, lost, read-only, pooled, without
pgvector, or one of the migrator's own queries cancelled or short of resources; and `from_database`,
which turns a server error no step foresaw into one of these codes rather than exit 1. Their codes
are in migrator/errors.py's one table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from migrator.drift_errors import LedgerDrift
from migrator.errors import MigratorError
from migrator.sqlstates import (
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    READ_ONLY_TRANSACTION,
    resource_advice,
)
from pgconn.errors import Reason, classify_error
from schema.ledger import LedgerShapeError


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


class PoolerRefused(MigratorError):
    exit_code = 9
    event = "pooler_refused"


class PgvectorUnavailable(MigratorError):
    exit_code = 4
    event = "pgvector_unavailable"


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
