"""The errors of running the migrations: a file failed (exit 5), another migrator held the lock
(exit 7), other sessions' locks outlasted the retry budget (exit 11), migrations are pending (exit
8); and what a failed file left behind, as each message says it. Their codes are in
migrator/errors.py's one table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from migrator.errors import MigratorError
from migrator.sqlstates import resource_advice


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
