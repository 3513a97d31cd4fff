"""Who holds the locks a migration statement waits for, as pg_stat_activity shows them. Sampled
from a second connection while the statement waits: once it gives up (lock_timeout) it waits for
nothing, and `pg_blocking_pids` names no one. Never a query text: it can carry data or secrets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

# pg_blocking_pids covers every heavyweight lock, the virtualxid locks a CONCURRENTLY build waits
# on for older transactions included; it is asked only while the statement waits for a lock (it
# takes the lock manager's partition locks). A prepared transaction blocks as pid 0.
WAITING_FOR_QUERY: Final = """
SELECT b.pid, a.application_name, a.state, a.wait_event,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_age_s
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
LEFT JOIN pg_stat_activity AS a ON a.pid = b.pid
WHERE w.pid = $1 AND w.wait_event_type = 'Lock'
"""

# After the failure: the sessions of this database whose transaction was already open when the
# statement started waiting (a lock it waited for is held by one of them, or was queued ahead).
OPEN_BEFORE_QUERY: Final = """
SELECT pid, application_name, state, wait_event,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS transaction_age_s
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND xact_start < clock_timestamp() - make_interval(secs => $1)
ORDER BY xact_start
LIMIT 5
"""


@dataclass(frozen=True)
class Blocker:
    """A session holding (or queued ahead for) a lock the migration waits for. `state`,
    `transaction_age_s` and `wait_event` are None for another role's session unless the migrator's
    role has pg_read_all_stats; pid and application_name are always visible."""

    pid: int
    application_name: str | None
    state: str | None
    transaction_age_s: float | None
    wait_event: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Blocker:
        age = row["transaction_age_s"]
        return cls(
            pid=row["pid"],
            application_name=row["application_name"],
            state=row["state"],
            transaction_age_s=round(age, 1) if age is not None else None,
            wait_event=row["wait_event"],
        )

    def describe(self) -> str:
        """`report-job (pid 4242, idle in transaction, transaction open 75 s, waiting on ClientRead)`."""
        if self.pid == 0:
            return "a prepared transaction (see pg_prepared_xacts)"
        details = [f"pid {self.pid}"]
        if self.state is None and self.transaction_age_s is None:
            details.append("state hidden: another role's session (pg_read_all_stats shows it)")
        if self.state:
            details.append(self.state)
        if self.transaction_age_s is not None:
            details.append(f"transaction open {self.transaction_age_s:.0f} s")
        if self.wait_event:
            details.append(f"waiting on {self.wait_event}")
        return f"{self.application_name or '(no application_name)'} ({', '.join(details)})"

    def fields(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "application_name": self.application_name,
            "state": self.state,
            "transaction_age_s": self.transaction_age_s,
            "wait_event": self.wait_event,
        }


def describe_all(blockers: Iterable[Blocker]) -> str:
    return "; ".join(b.describe() for b in blockers) or "no session this role can see"


def distinct(rows: Iterable[Mapping[str, Any]]) -> tuple[Blocker, ...]:
    """One Blocker per pid, in order (a parallel query lists its leader once per worker)."""
    seen: dict[int, Blocker] = {}
    for row in rows:
        blocker = Blocker.from_row(row)
        seen.setdefault(blocker.pid, blocker)
    return tuple(seen.values())


async def waiting_for(conn: asyncpg.Connection, pid: int) -> tuple[Blocker, ...]:
    """Who backend `pid` waits for right now; empty when it waits for no lock."""
    return distinct(await conn.fetch(WAITING_FOR_QUERY, pid))


async def open_before(conn: asyncpg.Connection, seconds: float) -> tuple[Blocker, ...]:
    """The oldest transactions of this database open for more than `seconds`: the suspects when
    no sample caught the statement waiting."""
    return distinct(await conn.fetch(OPEN_BEFORE_QUERY, seconds))
