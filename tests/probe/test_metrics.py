"""The metrics: each check sets its own from its finding, and the docs list exactly what is registered."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pgconn.pooler import PoolerVerdict
from probe.check import CheckResult, Snapshot, skipped
from probe.checks import DatabaseCheck, Extension, PgvectorCheck, RoundTrip, SchemaCheck, SchemaFinding
from probe.metrics import define_metrics
from probe.monitor import record
from schema.catalog import Catalog
from tests.metric_families import PREFIX, probe_families, registry_families

REPO = Path(__file__).resolve().parents[2]
CHECKS = (DatabaseCheck(), PgvectorCheck(), SchemaCheck(Catalog(migrations=())))
# A documented metric row: | `kata_db_name{labels}` | type | meaning |
DOC_ROW = re.compile(rf"^\| `({PREFIX}[a-z_]+)(?:\{{[a-z_,]+\}})?` \| (\w+) \|", re.M)


def snapshot(*results: CheckResult[Any], pooled: bool = False) -> Snapshot:
    return Snapshot(
        results={result.name: result for result in results},
        pooled=PoolerVerdict(pooled, "observed"),
        finished=0.0,
        finished_at=datetime(2025, 1, 2, tzinfo=UTC),
    )


def test_each_check_sets_its_own_metrics_from_its_finding() -> None:
    registry = CollectorRegistry()
    metrics = define_metrics(registry, version="1.2.3", checks=CHECKS)
    pending = SchemaFinding(version=1, expected=2, pending=1, changed=(), ahead=())
    record(
        metrics,
        snapshot(
            CheckResult("database", True, duration=0.002, found=RoundTrip(0.001)),
            CheckResult("pgvector", False, "extension vector is not installed", found=Extension(False)),
            CheckResult("schema", False, "1 pending", found=pending),
            pooled=True,
        ),
    )
    value = registry.get_sample_value
    assert value("kata_db_pgvector_installed") == 0
    assert (value("kata_db_schema_version"), value("kata_db_schema_expected_version")) == (1, 2)
    assert value("kata_db_schema_pending_migrations") == 1
    assert value("kata_db_pooled") == 1
    assert value("kata_db_checks_total", {"check": "schema", "result": "failed"}) == 1
    assert value("kata_db_check_duration_seconds_count", {"check": "database"}) == 1
    assert value("kata_db_last_success_timestamp_seconds") == 0  # a check failed: no success

    # The database goes away: the others are skipped, keep their last findings, time nothing.
    down = CheckResult[RoundTrip]("database", False, "connection refused", duration=0.5, raised=True)
    record(metrics, snapshot(down, skipped("pgvector"), skipped("schema")))
    assert value("kata_db_pgvector_installed") == 0
    assert value("kata_db_schema_version") == 1
    assert value("kata_db_checks_total", {"check": "schema", "result": "failed"}) == 2
    assert value("kata_db_check_duration_seconds_count", {"check": "schema"}) == 1
    assert value("kata_db_check_duration_seconds_count", {"check": "database"}) == 2


def test_every_check_is_a_label_before_its_first_round() -> None:
    registry = CollectorRegistry()
    define_metrics(registry, version="1.2.3", checks=CHECKS)
    for check in CHECKS:
        for result in ("ok", "failed"):
            assert (
                registry.get_sample_value("kata_db_checks_total", {"check": check.name, "result": result})
                == 0
            )


@pytest.mark.parametrize("document", ["README.md", "docs/probe.md"])
def test_the_docs_list_every_metric_family_the_probe_registers(document: str) -> None:
    documented = dict(DOC_ROW.findall((REPO / document).read_text()))
    registered = {name: kind for name, kind in registry_families().items() if name in probe_families()}
    assert documented == registered
