"""The health contract as one table: snapshot and process state in, status, lines and JSON out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgconn.dsn import parse_database_url
from pgconn.pooler import PoolerSetting, PoolerVerdict
from probe.check import CheckResult, Snapshot
from probe.checks import DatabaseCheck, Extension, PgvectorCheck, RoundTrip, SchemaCheck, SchemaFinding
from probe.health import View, health_body, readiness
from probe.pooled import PoolerObserver
from schema.catalog import Catalog
from schema.drift import BREAKING, DEGRADED, Drift

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CHECKS = (DatabaseCheck(), PgvectorCheck(), SchemaCheck(Catalog(migrations=())))
DB_OK = CheckResult("database", True, found=RoundTrip(latency=0.0012))
DB_DOWN = CheckResult[RoundTrip]("database", False, "connection refused", raised=True)
VECTOR_OK = CheckResult("pgvector", True, found=Extension(installed=True, version="0.8.5"))
VECTOR_MISSING = CheckResult("pgvector", False, "extension vector is not installed", found=Extension(False))
SCHEMA_OK = CheckResult("schema", True, found=SchemaFinding(2, 2, 0, changed=(), ahead=()))
SCHEMA_PENDING = CheckResult("schema", False, "1 pending", found=SchemaFinding(1, 2, 1, changed=(), ahead=()))
SCHEMA_CHANGED = CheckResult(
    "schema", False, "changed file: migration 1 changed", found=SchemaFinding(2, 2, 0, changed=(1,), ahead=())
)
HNSW_MISSING = Drift("messages_embedding_idx", "index", DEGRADED, "is missing: USING hnsw (embedding)")
COLUMN_MISSING = Drift(
    "messages.compacted_at", "column", BREAKING, "is missing (expected timestamp with time zone)"
)
SCHEMA_DEGRADED = CheckResult(
    "schema",
    True,
    "degraded drift: index messages_embedding_idx is missing: USING hnsw (embedding)",
    found=SchemaFinding(2, 2, 0, changed=(), ahead=(), drift=(HNSW_MISSING,), compared=2),
)
SCHEMA_BREAKING = CheckResult(
    "schema",
    False,
    "breaking drift: column messages.compacted_at is missing (expected timestamp with time zone)",
    found=SchemaFinding(2, 2, 0, changed=(), ahead=(), drift=(COLUMN_MISSING,), compared=2),
)
UNAVAILABLE = {
    name: CheckResult[object](name, False, "database unavailable", ran=False)
    for name in ("pgvector", "schema")
}


def view(
    *results: CheckResult[object], stale: bool = False, alive: bool = True, draining: bool = False
) -> View:
    snapshot = Snapshot(
        results={r.name: r for r in results},
        pooled=PoolerVerdict(False, "observed"),
        finished=0.0,
        finished_at=NOW,
    )
    return View(snapshot, 20.0 if stale else 0.1, stale, alive, draining, NOW)


EMPTY = View(None, None, False, True, False, NOW)


@pytest.mark.parametrize(
    ("current", "exclude", "ready", "status", "failed_lines"),
    [
        (view(DB_OK, VECTOR_OK, SCHEMA_OK), (), True, "healthy", []),
        (view(DB_OK, VECTOR_OK, SCHEMA_DEGRADED), (), True, "healthy", []),
        (
            view(DB_OK, VECTOR_OK, SCHEMA_BREAKING),
            (),
            False,
            "degraded",
            [
                "[-]schema failed: breaking drift: column messages.compacted_at is missing "
                "(expected timestamp with time zone)"
            ],
        ),
        (view(DB_OK, VECTOR_OK, SCHEMA_PENDING), (), False, "degraded", ["[-]schema failed: 1 pending"]),
        (view(DB_OK, VECTOR_OK, SCHEMA_PENDING), ("schema",), True, "degraded", []),
        (view(DB_OK, VECTOR_MISSING, SCHEMA_OK), ("pgvector,schema",), True, "degraded", []),
        (
            view(DB_DOWN, *UNAVAILABLE.values()),
            (),
            False,
            "degraded",
            [
                "[-]database failed: connection refused",
                "[-]pgvector failed: database unavailable",
                "[-]schema failed: database unavailable",
            ],
        ),
        (
            view(DB_OK, VECTOR_OK, SCHEMA_OK, stale=True),
            (),
            False,
            "degraded",
            [f"[-]{n} failed: stale: last round ended 20.0s ago" for n in ("database", "pgvector", "schema")],
        ),
        (
            view(DB_OK, VECTOR_OK, SCHEMA_OK, draining=True),
            (),
            False,
            "unhealthy",
            ["[-]shutdown failed: shutting down"],
        ),
        (
            view(DB_OK, VECTOR_OK, SCHEMA_OK, draining=True),
            ("shutdown",),
            False,
            "unhealthy",
            ["[-]shutdown failed: shutting down"],
        ),
        (view(DB_OK, VECTOR_OK, SCHEMA_OK, alive=False), (), True, "unhealthy", []),
        (
            EMPTY,
            (),
            False,
            "degraded",
            [f"[-]{n} failed: no check round finished yet" for n in ("database", "pgvector", "schema")],
        ),
    ],
)
def test_readiness_and_status(
    current: View, exclude: tuple[str, ...], ready: bool, status: str, failed_lines: list[str]
) -> None:
    answer = readiness(current, CHECKS, exclude)
    assert answer.ok is ready
    assert health_body(current, "1.2.3", CHECKS)["status"] == status
    lines = answer.text(verbose=True).splitlines()
    assert [line for line in lines if line.startswith("[-]")] == failed_lines
    assert lines[-1] == f"readyz check {'passed' if ready else 'failed'}"
    assert answer.text(verbose=False) == ("ok\n" if ready else answer.text(verbose=True))


def test_verbose_readiness_names_degraded_drift_on_a_passing_line() -> None:
    lines = readiness(view(DB_OK, VECTOR_OK, SCHEMA_DEGRADED), CHECKS).text(verbose=True).splitlines()
    assert (
        "[+]schema ok (degraded drift: index messages_embedding_idx is missing: USING hnsw (embedding))"
        in lines
    )
    assert lines[-1] == "readyz check passed"


def test_json_body_keeps_the_original_keys_and_hides_latency_when_down() -> None:
    body = health_body(view(DB_OK, VECTOR_OK, SCHEMA_OK), "1.2.3", CHECKS)
    assert body["timestamp"] == "2025-01-02T03:04:05Z"
    assert body["version"] == "1.2.3"
    assert body["checks"]["database"] == {
        "status": "connected",
        "latencyMs": 1.2,
        "pooled": False,
        "pooledSource": "observed",
    }
    down = health_body(view(DB_DOWN, *UNAVAILABLE.values()), "1.2.3", CHECKS)["checks"]
    assert down["database"]["error"] == "connection refused" and "latencyMs" not in down["database"]
    assert down["pgvector"] == {"status": "unknown", "error": "database unavailable"}


@pytest.mark.parametrize(
    ("results", "stale", "pgvector", "schema"),
    [
        (
            (DB_OK, VECTOR_OK, SCHEMA_OK),
            False,
            {"status": "installed", "version": "0.8.5"},
            {"status": "current", "version": 2, "expected": 2, "pending": 0, "drift": []},
        ),
        (
            (DB_OK, VECTOR_OK, SCHEMA_DEGRADED),
            False,
            {"status": "installed", "version": "0.8.5"},
            {
                "status": "degraded",
                "version": 2,
                "expected": 2,
                "pending": 0,
                "drift": [HNSW_MISSING.to_json()],
            },
        ),
        (
            (DB_OK, VECTOR_OK, SCHEMA_BREAKING),
            False,
            {"status": "installed", "version": "0.8.5"},
            {
                "status": "drift",
                "version": 2,
                "expected": 2,
                "pending": 0,
                "drift": [COLUMN_MISSING.to_json()],
                "error": SCHEMA_BREAKING.reason,
            },
        ),
        (
            (DB_OK, VECTOR_MISSING, SCHEMA_PENDING),
            False,
            {"status": "missing", "error": "extension vector is not installed"},
            {
                "status": "pending",
                "version": 1,
                "expected": 2,
                "pending": 1,
                "drift": [],
                "error": "1 pending",
            },
        ),
        (
            (DB_OK, VECTOR_OK, SCHEMA_CHANGED),
            False,
            {"status": "installed", "version": "0.8.5"},
            {
                "status": "drift",
                "version": 2,
                "expected": 2,
                "pending": 0,
                "drift": [],
                "error": "changed file: migration 1 changed",
            },
        ),
        (
            (DB_OK, VECTOR_OK, SCHEMA_OK),
            True,  # a stale round's findings are not shown: only that it is stale
            {"status": "unknown", "error": "stale: last round ended 20.0s ago"},
            {"status": "unknown", "error": "stale: last round ended 20.0s ago"},
        ),
    ],
)
def test_each_check_writes_its_own_json_from_its_finding(
    results: tuple[CheckResult[object], ...],
    stale: bool,
    pgvector: dict[str, object],
    schema: dict[str, object],
) -> None:
    checks = health_body(view(*results, stale=stale), "1.2.3", CHECKS)["checks"]
    assert list(checks) == ["database", "pgvector", "schema"]
    assert (checks["pgvector"], checks["schema"]) == (pgvector, schema)


@pytest.mark.parametrize(
    ("host", "setting", "observations", "expected"),
    [
        ("db", PoolerSetting.AUTO, [], PoolerVerdict(False, "default")),
        ("db", PoolerSetting.AUTO, [(10, 10), (10, 10)], PoolerVerdict(False, "observed")),
        ("db", PoolerSetting.AUTO, [(10, 99)], PoolerVerdict(True, "observed")),  # pooler's own key
        ("db", PoolerSetting.AUTO, [(10, 10), (10, 11)], PoolerVerdict(True, "observed")),  # pid changed
        ("db", PoolerSetting.AUTO, [(10, 11), (10, 10)], PoolerVerdict(True, "observed")),  # sticks
        ("ep-x-pooler.neon.tech", PoolerSetting.AUTO, [(10, 10)], PoolerVerdict(True, "host")),
        ("ep-x-pooler.neon.tech", PoolerSetting.FALSE, [(10, 11)], PoolerVerdict(False, "setting")),
        ("db", PoolerSetting.TRUE, [(10, 10)], PoolerVerdict(True, "setting")),
    ],
)
def test_pooled_verdict(
    host: str, setting: PoolerSetting, observations: list[tuple[int, int]], expected: PoolerVerdict
) -> None:
    observer = PoolerObserver(parse_database_url(f"postgresql://u@{host}/d"), setting)
    for announced, backend in observations:
        observer.observe(announced, backend)
    assert observer.verdict == expected
