"""One exception class per exit code; each builds the one line an operator reads. The table of
exit codes is here and only here: `--help`, README.md and docs/migrator.md are checked against it."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final

from pgconn.errors import Reason, classify_error

# code -> meaning. The docs' tables start each row with this meaning and may add detail after it.
EXIT_CODES: Final[Mapping[str, str]] = {
    "0": "success: applied, or nothing to do",
    "1": "unexpected internal error",
    "2": "usage or configuration error",
    "3": "database unreachable, authentication failed, database missing, or connection lost",
    "4": "pgvector missing, not installable by this role, or too old",
    "5": "a migration failed and was rolled back",
    "6": "drift: an applied migration changed or is missing locally, or the live schema differs from "
    "what the applied migrations promise (also: `baseline` refused)",
    "7": "timed out waiting for another migrator's lock",
    "8": "migrations pending",
    "9": "refused: pooled connection and no `DATABASE_URL_UNPOOLED`",
    "10": "insufficient privilege",
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
    }

    def __init__(self, target: str, reason: str, waited: float) -> None:
        self.reason = reason
        advice = self.ADVICE.get(
            reason, "check that the server is up and reachable, or raise --connect-timeout"
        )
        super().__init__(f"cannot connect to {target} after {waited:.1f} s: {reason}; {advice}")


class ConnectionLost(MigratorError):
    """The connection broke after it was made (server restart, network): nothing half-applied."""

    exit_code = 3
    event = "connection_lost"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(
            f"lost the database connection ({classify_error(exc)}); any open transaction was rolled back "
            "by the server, run again once the database is reachable"
        )


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

    def __init__(
        self, filename: str, line: int, column: int, message: str, *, transactional: bool, ended: bool = False
    ) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        outcome = self.ENDED if ended else failure_outcome(transactional=transactional)
        super().__init__(
            f"migration {filename} failed at line {line}, column {column}: {message} ({outcome}); "
            "fix the file (or the data) and run again"
        )


class DriftDetected(MigratorError):
    exit_code = 6
    event = "drift_detected"

    def __init__(self, changed: Sequence[str], missing: Sequence[str]) -> None:
        self.changed = tuple(changed)
        self.missing = tuple(missing)
        parts = []
        if changed:
            parts.append(f"changed since applied: {', '.join(changed)}")
        if missing:
            parts.append(f"applied but missing here: {', '.join(missing)}")
        super().__init__(
            f"drift: {'; '.join(parts)}; nothing was run. Restore the applied files as they were "
            "(add a new migration for new changes) or run this image's matching version"
        )


class SchemaDrift(MigratorError):
    """The catalog lacks or changed objects the ledger's version promises (its snapshot)."""

    exit_code = 6
    event = "schema_drift"

    def __init__(self, version: int, lines: Sequence[str], *, command: str) -> None:
        self.lines = tuple(lines)
        super().__init__(
            f"drift: the live schema differs from what migrations 1..{version} create "
            f"({len(lines)} object(s)); `{command}` ran nothing: {'; '.join(lines)}. Restore each "
            "object (the named migration file holds its statement), then run again"
        )


class BaselineRefused(MigratorError):
    """`baseline` on a database without tables would record a schema that is not there."""

    exit_code = 6
    event = "baseline_refused"

    def __init__(self, version: int) -> None:
        super().__init__(
            f"baseline {version} refused: this database has no tables, so no schema made by another tool "
            "is here to record; nothing was recorded. Run `kata-migrate up` to create the schema"
        )


class BaselineUnsatisfied(MigratorError):
    """`baseline N` on a schema that lacks what 1..N create: recording it would be a lie."""

    exit_code = 6
    event = "baseline_refused"

    def __init__(self, version: int, lines: Sequence[str], satisfied: int) -> None:
        self.lines = tuple(lines)
        advice = (
            f"it does satisfy version {satisfied}: run `kata-migrate baseline {satisfied}`, then `up`"
            if satisfied
            else "it satisfies no version: bring it up to the application's current schema first"
        )
        super().__init__(
            f"baseline {version} refused, nothing was recorded: the live schema lacks what migrations "
            f"1..{version} create ({len(lines)} object(s)): {'; '.join(lines)}; {advice}"
        )


class UnrecordedSchema(MigratorError):
    """`up` on application tables with no ledger: applying 0001 would fail on them, or worse."""

    exit_code = 6
    event = "unrecorded_schema"

    def __init__(
        self, tables: Sequence[str], drizzle: str | None, advice: str, lacking: Sequence[str] = ()
    ) -> None:
        # `advice` is the one `status` gives too (conformance.Unrecorded.advice).
        found = f"; {drizzle}" if drizzle else ""
        lacks = f"; it lacks: {'; '.join(lacking)}" if lacking else ""
        super().__init__(
            f"tables {', '.join(tables)} exist but no migration is recorded (another tool made them"
            f"{found}); nothing was run: {advice}{lacks}"
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
