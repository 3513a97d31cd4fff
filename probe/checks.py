"""One round's checks: each a name and a coroutine; the runner bounds them and never raises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

from pgconn.errors import classify_error
from schema.catalog import Catalog
from schema.verdicts import read_state

DATABASE: Final = "database"
PGVECTOR: Final = "pgvector"
SCHEMA: Final = "schema"
CHECK_NAMES: Final = (DATABASE, PGVECTOR, SCHEMA)
DATABASE_UNAVAILABLE: Final = "database unavailable"


@dataclass(frozen=True)
class CheckResult:
    """What one check found. `reason` is a fixed or computed text, never a driver message."""

    name: str
    ok: bool
    reason: str = ""
    duration: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)
    # True when an exception ended the check: the connection's state is unknown, drop it.
    raised: bool = False


class CheckFailed(Exception):
    """Raised inside a check for a failure that is not an exception from the driver."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


CheckFunction = Callable[[asyncpg.Connection], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class Check:
    """A named check over the round's connection; returns details or raises CheckFailed."""

    name: str
    run: CheckFunction


async def run_check(check: Check, conn: asyncpg.Connection, deadline: float) -> CheckResult:
    """Run `check` until the loop-time `deadline`; every exception becomes a failed result."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            details = await check.run(conn)
    except CheckFailed as exc:
        return CheckResult(check.name, False, exc.reason, time.perf_counter() - started, exc.details)
    except Exception as exc:  # checks never raise: the reason is a fixed classification
        return CheckResult(check.name, False, classify_error(exc), time.perf_counter() - started, raised=True)
    return CheckResult(check.name, True, "", time.perf_counter() - started, details)


def skipped(name: str) -> CheckResult:
    """A check that could not run because there was no connection."""
    return CheckResult(name, False, DATABASE_UNAVAILABLE)


async def database_check(conn: asyncpg.Connection) -> Mapping[str, Any]:
    """The round trip, then the backend pid for pooler detection.

    `execute` without arguments uses the simple query protocol: exactly one round trip and no
    prepared statement at all. `fetchval` with statement_cache_size=0 takes two (Parse/Describe,
    then Bind/Execute), so timing it would report twice the network latency.
    """
    started = time.perf_counter()
    await conn.execute("SELECT 1")
    latency = time.perf_counter() - started
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    return {"latency": latency, "backend_pid": int(pid)}


async def pgvector_check(conn: asyncpg.Connection) -> Mapping[str, Any]:
    version = await conn.fetchval("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'")
    if version is None:
        raise CheckFailed("extension vector is not installed (run kata-migrate)", installed=False)
    return {"installed": True, "version": str(version)}


def schema_check(catalog: Catalog) -> CheckFunction:
    """Ready when every migration of this image is applied and none changed since.

    Versions the database has and this image lacks are reported, not failed: during a rolling
    upgrade the new Job migrates first, and the old pods must stay ready until replaced.
    """

    async def check(conn: asyncpg.Connection) -> Mapping[str, Any]:
        state = await read_state(conn, catalog)
        details = {
            "version": state.version,
            "expected": catalog.latest_version,
            "pending": len(state.pending),
            "changed": list(state.changed),
            "ahead": list(state.missing),
        }
        if state.changed:
            raise CheckFailed(f"drift: migration {state.changed[0]} changed since it was applied", **details)
        if state.pending:
            raise CheckFailed(f"{len(state.pending)} pending", **details)
        return details

    return check


def default_checks(catalog: Catalog) -> tuple[Check, ...]:
    return (
        Check(DATABASE, database_check),
        Check(PGVECTOR, pgvector_check),
        Check(SCHEMA, schema_check(catalog)),
    )
