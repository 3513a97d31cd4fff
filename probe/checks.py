"""The probe's checks, one class each, and the one list of them a probe runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from probe.check import Check, CheckFailed, CheckResult, Recorder, Snapshot, Verdict
from schema.catalog import Catalog
from schema.verdicts import read_state


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


@dataclass(frozen=True)
class SchemaState:
    """The schema check's finding: the ledger against this image's migrations."""

    version: int
    expected: int
    pending: int
    changed: tuple[int, ...]
    ahead: tuple[int, ...]


class SchemaCheck(Check[SchemaState]):
    """Ready when every migration of this image is applied and none changed since.

    Versions the database has and this image lacks are reported, not failed: during a rolling
    upgrade the new Job migrates first, and the old pods must stay ready until replaced.
    """

    name = "schema"

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def run(self, conn: asyncpg.Connection) -> SchemaState:
        state = await read_state(conn, self._catalog)
        found = SchemaState(
            version=state.version,
            expected=self._catalog.latest_version,
            pending=len(state.pending),
            changed=tuple(state.changed),
            ahead=tuple(state.missing),
        )
        if found.changed:
            raise CheckFailed(f"drift: migration {found.changed[0]} changed since it was applied", found)
        if found.pending:
            raise CheckFailed(f"{found.pending} pending", found)
        return found

    def body(self, verdict: Verdict, found: SchemaState | None, snapshot: Snapshot | None) -> dict[str, Any]:
        if found is None:
            return {"status": "current" if verdict.ok else "unknown"}
        status = "current" if verdict.ok else ("drift" if found.changed else "pending")
        counts = {"version": found.version, "expected": found.expected, "pending": found.pending}
        return {"status": status, **counts}

    def metrics(self, registry: CollectorRegistry) -> Recorder:
        version = Gauge(
            "kata_db_schema_version", "Highest migration version applied to the database", registry=registry
        )
        expected = Gauge(
            "kata_db_schema_expected_version",
            "Highest migration version this image ships (kata_db_schema_version should reach it)",
            registry=registry,
        )
        pending = Gauge(
            "kata_db_schema_pending_migrations",
            "Migrations of this image not yet applied to the database",
            registry=registry,
        )

        def record(result: CheckResult[SchemaState]) -> None:
            if result.found is not None:
                version.set(result.found.version)
                expected.set(result.found.expected)
                pending.set(result.found.pending)

        return record


def default_checks(catalog: Catalog) -> tuple[Check[Any], ...]:
    """The checks of every probe, in the order they run and are listed."""
    return (DatabaseCheck(), PgvectorCheck(), SchemaCheck(catalog))
