"""The limits one run of the migrator works under, as the engine reads them: its timeouts, the index
build settings of no-transaction files and the pinned search_path. A leaf: the option table that
fills them is migrator/settings.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


def to_ms(seconds: float) -> int:
    """Seconds as PostgreSQL stores a timeout setting: whole milliseconds."""
    return round(seconds * 1000)


# The migrator's own: between two statements of a file its session is idle in a transaction for a
# round trip, which a role's idle_in_transaction_session_timeout of 1 ms would end; a minute still
# frees the locks of a migrator that hangs mid-file.
IDLE_IN_TRANSACTION: Final = "60s"


@dataclass(frozen=True)
class RunLimits:
    """The limits of one run, in seconds (0 disables a PostgreSQL timeout), the index build
    settings for no-transaction files, and where the files' objects land."""

    lock_timeout: float = 120.0
    statement_timeout: float = 3600.0
    ddl_lock_timeout: float = 10.0
    # lock_timeout of the CONCURRENTLY statements, which wait for older transactions.
    concurrent_wait_timeout: float = 300.0
    # How long `up` keeps retrying files (and `repair` its script) blocked by other sessions' locks
    # (contention.py).
    lock_retry_budget: float = 300.0
    maintenance_work_mem_kb: int = 256 * 1024
    max_parallel_maintenance_workers: int = 1
    # Where the files' objects land (migrator/placement.py); set by the run once connected.
    search_path: str | None = None

    def timeouts(self) -> tuple[str, ...]:
        """The limits every query of the migrator runs under, its own and the files', whatever the
        role or the database sets (a statement_timeout of 1 ms there would fail the ledger read)."""
        return (
            f"lock_timeout = '{to_ms(self.ddl_lock_timeout)}ms'",
            f"statement_timeout = '{to_ms(self.statement_timeout)}ms'",
            f"idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'",
        )

    def placement(self) -> tuple[str, ...]:
        """The pinned search_path each file starts with, so a file's own `SET search_path` cannot
        move the next file's objects (none before the run pinned it)."""
        return (f"search_path = {self.search_path}",) if self.search_path else ()

    def build_settings(self) -> tuple[str, ...]:
        """For the index builds of no-transaction files only."""
        return (
            f"maintenance_work_mem = '{self.maintenance_work_mem_kb}kB'",
            f"max_parallel_maintenance_workers = {self.max_parallel_maintenance_workers}",
        )
