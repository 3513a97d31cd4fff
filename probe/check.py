"""What a check is: a name, its queries, a typed finding, its JSON and its metrics; and the runner."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, TypeVar

import asyncpg
from prometheus_client import CollectorRegistry

from pgconn.errors import classify_error
from pgconn.pooler import PoolerVerdict

DATABASE_UNAVAILABLE: Final = "database unavailable"

Found = TypeVar("Found")
Found_co = TypeVar("Found_co", covariant=True)


@dataclass(frozen=True)
class CheckResult(Generic[Found_co]):
    """What one check found. `reason` is a fixed or computed text, never a driver message."""

    name: str
    ok: bool
    reason: str = ""
    duration: float = 0.0
    # The check's own typed finding; None when it could not get that far.
    found: Found_co | None = None
    # True when an exception ended the check: the connection's state is unknown, drop it.
    raised: bool = False
    # False when the check did not run at all (no connection): no duration to observe.
    ran: bool = True


@dataclass(frozen=True)
class Snapshot:
    """One finished round: every check's result, the pooled verdict, and when it ended."""

    results: Mapping[str, CheckResult[Any]]
    pooled: PoolerVerdict
    finished: float  # loop clock (monotonic)
    finished_at: datetime

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results.values())

    def failures(self) -> list[str]:
        return [f"{r.name}: {r.reason}" for r in self.results.values() if not r.ok]


@dataclass(frozen=True)
class Verdict:
    """One named line of a readiness answer."""

    name: str
    ok: bool
    reason: str = ""

    def line(self, excluded: bool = False) -> str:
        if excluded:
            return f"[+]{self.name} excluded: {'ok' if self.ok else 'failed'}"
        return f"[+]{self.name} ok" if self.ok else f"[-]{self.name} failed: {self.reason}"


class CheckFailed(Exception):
    """Raised inside a check for a failure that is not a driver exception, with what it found."""

    def __init__(self, reason: str, found: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.found = found


Recorder = Callable[[CheckResult[Any]], None]


class Check(ABC, Generic[Found]):
    """One check of the round. Everything about it lives on its class: monitor, health body,
    routes and metrics iterate the list of checks and never name one.
    """

    name: ClassVar[str]
    # True for the check that speaks for the connection: acquiring it counts in this check's
    # duration, a failure to acquire is this check's failure, and when it fails the rest skip.
    covers_connection: ClassVar[bool] = False

    @abstractmethod
    async def run(self, conn: asyncpg.Connection) -> Found:
        """Query and return the finding; raise CheckFailed (with a finding) for a failed check."""

    @abstractmethod
    def body(self, verdict: Verdict, found: Found | None, snapshot: Snapshot | None) -> dict[str, Any]:
        """This check's entry under `checks` in the health JSON, without `error` (added by health).

        `found` is None when the round is stale or the check did not get that far.
        """

    def metrics(self, registry: CollectorRegistry) -> Recorder:
        """Define this check's own metrics on `registry`; the recorder sets them after each round."""
        return lambda result: None


async def run_check(check: Check[Any], conn: asyncpg.Connection, deadline: float) -> CheckResult[Any]:
    """Run `check` until the loop-time `deadline`; every exception becomes a failed result."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            found = await check.run(conn)
    except CheckFailed as exc:
        return CheckResult(check.name, False, exc.reason, time.perf_counter() - started, exc.found)
    except Exception as exc:  # checks never raise: the reason is a fixed classification
        return CheckResult(check.name, False, classify_error(exc), time.perf_counter() - started, raised=True)
    return CheckResult(check.name, True, "", time.perf_counter() - started, found)


def skipped(name: str) -> CheckResult[Any]:
    """A check that could not run because there was no connection."""
    return CheckResult(name, False, DATABASE_UNAVAILABLE, ran=False)
