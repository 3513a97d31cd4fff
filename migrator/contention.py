"""Lock contention during `up`: a statement that gave up waiting for another session's lock
(lock_timeout, SQLSTATE 55P03) has its file rolled back and run again after a jittered pause that
doubles up to a cap, while the run's retry budget lasts; then exit 11. Nothing is recorded for a
blocked file, and the migration lock is held throughout."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from migrator import blockers
from migrator.events import EventLog
from migrator.migration_errors import BlockedByLocks
from schema.catalog import Migration
from schema.splitter import leading_words

# The first retry waits 0.5-1 s, each next one up to twice as long, never more than 30 s: short
# enough to catch a blocker that just finished, long enough apart that the application's queries
# (which queue behind a waiting ALTER TABLE for up to MIGRATOR_DDL_LOCK_TIMEOUT) get the table back.
FIRST_PAUSE: Final = 1.0
MAX_PAUSE: Final = 30.0

# CREATE [UNIQUE] INDEX / DROP INDEX / REINDEX ... CONCURRENTLY: they wait for older transactions.
CONCURRENT_HEADS: Final = (
    ("create", "index", "concurrently"),
    ("create", "unique", "index", "concurrently"),
    ("drop", "index", "concurrently"),
)
CONCURRENTLY: Final = re.compile(r"\bconcurrently\b", re.IGNORECASE)


def waits_for_old_transactions(text: str) -> bool:
    """Whether a statement is one of the CONCURRENTLY commands that wait, under SHARE UPDATE
    EXCLUSIVE (reads and writes go on), for every transaction older than a phase of theirs."""
    words = leading_words(text, 4)
    if any(words[: len(head)] == head for head in CONCURRENT_HEADS):
        return True
    # REINDEX [ (options) ] {INDEX | TABLE | SCHEMA | DATABASE} CONCURRENTLY name: short, and the
    # options in parentheses stop leading_words.
    return words[:1] == ("reindex",) and CONCURRENTLY.search(text) is not None


class Contention(Exception):
    """A statement of a file gave up waiting for a lock; the file is rolled back (a no-transaction
    file: that statement), nothing is recorded. Caught by `ContentionRetry`, never an exit itself."""

    def __init__(
        self,
        migration: Migration,
        line: int,
        message: str,
        found: tuple[blockers.Blocker, ...],
        *,
        seen_waiting: bool,
        waited: float,
    ) -> None:
        super().__init__(message)
        self.migration = migration
        self.line = line
        self.message = message
        self.blockers = found
        self.seen_waiting = seen_waiting  # False: the suspects found after the failure
        self.waited = waited


@dataclass(frozen=True)
class Backoff:
    first: float = FIRST_PAUSE
    cap: float = MAX_PAUSE

    def pause(self, retry: int, draw: float) -> float:
        """Seconds before retry `retry` (1, 2, ...): between half and all of first x 2^(retry-1),
        capped, `draw` in [0, 1) choosing where. The jitter keeps two runs (or a run and a batch job
        that retries too) from meeting again in step."""
        ceiling = min(self.cap, self.first * 2.0 ** (retry - 1))
        return ceiling * (0.5 + draw / 2)


class ContentionRetry:
    """Runs each file's attempts; the budget is for the whole run, counted from its first lock
    timeout, and no attempt starts once it is spent."""

    def __init__(self, budget: float, log: EventLog, backoff: Backoff = Backoff()) -> None:
        self._budget = budget
        self._log = log
        self._backoff = backoff
        self._since: float | None = None

    async def apply(self, attempt: Callable[[], Awaitable[None]]) -> None:
        tries = 0
        while True:
            tries += 1
            try:
                await attempt()
                return
            except Contention as blocked:
                now = time.monotonic()
                self._since = now if self._since is None else self._since
                self._blocked(blocked, tries)
                pause = self._backoff.pause(tries, random.random())  # noqa: S311 (jitter, not a secret)
                spent = now - self._since
                if spent + pause > self._budget:
                    raise BlockedByLocks(
                        blocked.migration.filename,
                        blocked.line,
                        tries,
                        spent,
                        blockers.describe_all(blocked.blockers),
                        transactional=blocked.migration.transactional,
                    ) from blocked
                self._retrying(blocked.migration, tries + 1, pause, self._budget - spent)
                await asyncio.sleep(pause)  # the backoff itself, holding no lock but the migrator's

    def _blocked(self, blocked: Contention, attempt: int) -> None:
        self._log.warning(
            "lock_blocked",
            f"{blocked.migration.filename} line {blocked.line}: {blocked.message} after "
            f"{blocked.waited:.1f} s (attempt {attempt}); blocked by "
            + blockers.describe_all(blocked.blockers),
            file=blocked.migration.filename,
            line=blocked.line,
            attempt=attempt,
            waited_s=round(blocked.waited, 1),
            blockers=[b.fields() for b in blocked.blockers],
            blockers_seen_waiting=blocked.seen_waiting,
        )

    def _retrying(self, migration: Migration, attempt: int, pause: float, left: float) -> None:
        undone = (
            "the file was rolled back"
            if migration.transactional
            else "the blocked statement was rolled back (a concurrent index build leaves its index INVALID, "
            "which the file's first statements move aside), the ones before it stay applied and run again"
        )
        self._log.info(
            "lock_retry",
            f"{undone}; applying {migration.filename} again in {pause:.1f} s "
            f"({left:.0f} s of the {self._budget:g} s retry budget left)",
            file=migration.filename,
            attempt=attempt,
            retry_in_s=round(pause, 2),
            budget_left_s=round(left, 1),
        )
