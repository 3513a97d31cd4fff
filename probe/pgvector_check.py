"""The pgvector check: the extension is installed, at the version schema/pgvector.py requires."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from probe.check import Check, CheckFailed, CheckResult, Recorder, Snapshot, Verdict
from schema.pgvector import EXTENSION, is_too_old, needed_text


@dataclass(frozen=True)
class Extension:
    """The pgvector check's finding: installed or not, and which version."""

    installed: bool
    version: str | None = None


class PgvectorCheck(Check[Extension]):
    """The `vector` extension is installed in the database, at a version the schema works with."""

    name = "pgvector"

    async def run(self, conn: asyncpg.Connection) -> Extension:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = $1", EXTENSION
        )
        if version is None:
            raise CheckFailed(
                f"extension {EXTENSION} is not installed (run kata-migrate)", Extension(installed=False)
            )
        found = Extension(installed=True, version=str(version))
        if is_too_old(str(version)):  # what the migrator's preflight refuses (exit 4)
            reason = f"pgvector {version} is installed but {needed_text()} (run kata-migrate)"
            raise CheckFailed(reason, found)
        return found

    def body(self, verdict: Verdict, found: Extension | None, snapshot: Snapshot | None) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "installed" if verdict.ok else "unknown"}
        if found is not None:  # what the round found, even when it fails (too old: installed)
            body["status"] = "installed" if found.installed else "missing"
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
