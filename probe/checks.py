"""The probe's checks, one class each, and the one list of them a probe runs (the schema check,
the largest, has its own module)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from probe.check import Check, CheckFailed, CheckResult, Recorder, Snapshot, Verdict
from probe.schema_check import SchemaCheck, SchemaFinding
from schema.catalog import Catalog

__all__ = [
    "DatabaseCheck",
    "Extension",
    "PgvectorCheck",
    "RoundTrip",
    "SchemaCheck",
    "SchemaFinding",
    "default_checks",
]


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


@dataclass(frozen=True)
class Extension:
    """The pgvector check's finding: installed or not, and which version."""

    installed: bool
    version: str | None = None


class PgvectorCheck(Check[Extension]):
    """The `vector` extension is installed in the database."""

    name = "pgvector"

    async def run(self, conn: asyncpg.Connection) -> Extension:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'"
        )
        if version is None:
            raise CheckFailed(
                "extension vector is not installed (run kata-migrate)", Extension(installed=False)
            )
        return Extension(installed=True, version=str(version))

    def body(self, verdict: Verdict, found: Extension | None, snapshot: Snapshot | None) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "installed" if verdict.ok else "unknown"}
        if found is not None and not found.installed:
            body["status"] = "missing"
        if found is not None and found.version is not None:
            body["version"] = found.version
        return body

    def metrics(self, registry: CollectorRegistry) -> Recorder:
        installed = Gauge(
            "kata_db_pgvector_installed", "1 when the vector extension is installed", registry=registry
        )

        def record(result: CheckResult[Extension]) -> None:
            if result.found is not None:
                installed.set(1 if result.found.installed else 0)

        return record


def default_checks(catalog: Catalog, schema_rounds: int = 1) -> tuple[Check[Any], ...]:
    """The checks of every probe, in the order they run and are listed; the schema check compares
    the catalog every `schema_rounds` rounds."""
    return (DatabaseCheck(), PgvectorCheck(), SchemaCheck(catalog, schema_rounds))
