"""The database check: reachability and one round trip's latency; it speaks for the round's connection."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from probe.check import Check, Snapshot, Verdict


@dataclass(frozen=True)
class RoundTrip:
    """The database check's finding: one `SELECT 1` round trip, in seconds."""

    latency: float


class DatabaseCheck(Check[RoundTrip]):
    """Reachability and latency; it speaks for the round's connection."""

    name = "database"
    covers_connection = True

    async def run(self, conn: asyncpg.Connection) -> RoundTrip:
        """`execute` without arguments uses the simple query protocol: exactly one round trip and no
        prepared statement at all. `fetchval` with statement_cache_size=0 takes two (Parse/Describe,
        then Bind/Execute), so timing it would report twice the network latency.
        """
        started = time.perf_counter()
        await conn.execute("SELECT 1")
        return RoundTrip(time.perf_counter() - started)

    def body(self, verdict: Verdict, found: RoundTrip | None, snapshot: Snapshot | None) -> dict[str, Any]:
        pooled = snapshot.pooled if snapshot else None
        body: dict[str, Any] = {"status": "connected" if verdict.ok else "disconnected"}
        if verdict.ok and found is not None:
            body["latencyMs"] = round(found.latency * 1000, 3)
        body["pooled"] = bool(pooled and pooled.pooled)
        body["pooledSource"] = pooled.source if pooled else "default"
        return body
