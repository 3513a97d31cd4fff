"""The table of exit codes, here and only here: `--help`, README.md and docs/migrator.md are checked
against it. Beside it the class every error of the migrator derives from, the errors of no one
subsystem (an internal error, a usage error, a signal) and the exit status of an error. The classes
that carry the other codes build the one line an operator reads, each family in its own module:
what the database did (migrator/database_errors.py), what a migration's run met
(migrator/migration_errors.py), the roles (migrator/role_errors.py) and exit 6
(migrator/drift_errors.py); what a SQLSTATE says about the server is in migrator/sqlstates.py."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final

# code -> meaning. The docs' tables start each row with this meaning and may add detail after it.
EXIT_CODES: Final[Mapping[str, str]] = {
    "0": "success: applied, or nothing to do",
    "1": "unexpected internal error",
    "2": "usage or configuration error",
    "3": "database unreachable, authentication failed, database missing, or connection lost",
    "4": "pgvector missing, not installable by this role, or too old",
    "5": "a migration failed and was rolled back",
    "6": "changed files or drift: an applied migration changed or is missing locally, or the live schema "
    "differs from what the applied migrations promise (also: `baseline` refused)",
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


class UsageError(MigratorError):
    """Arguments, settings or migration files are unusable (raised before any connection), or the
    database lacks the schema the migrator works in."""

    exit_code = 2
    event = "usage_error"


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
