"""Every metric the probe exports, defined on the registry it is given: its own and each check's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from probe.check import Check, Recorder
from probe.connection import STATES

# From a loopback round trip (~0.1 ms) to the longest sensible PROBE_TIMEOUT.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESULTS = ("ok", "failed")


@dataclass(frozen=True)
class ProbeMetrics:
    """The metric objects; the monitor sets them after each round, scrapes only read them.

    `recorders` holds each check's own metrics, by check name, as the check defined them.
    """

    up: Gauge
    check_duration: Histogram
    checks: Counter
    last_success: Gauge
    pooled: Gauge
    pool_connections: Gauge
    build_info: Gauge
    recorders: Mapping[str, Recorder]


def define_metrics(
    registry: CollectorRegistry, *, version: str, checks: Sequence[Check[Any]]
) -> ProbeMetrics:
    """Register all of the probe's metrics, the checks' own and the process collector, on `registry`."""
    metrics = ProbeMetrics(
        up=Gauge(
            "kata_db_up",
            "1 when the latest round is fresh and the database answered, else 0",
            registry=registry,
        ),
        check_duration=Histogram(
            "kata_db_check_duration_seconds",
            "Time one check took, connection acquisition included for the database check",
            ["check"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        checks=Counter(
            "kata_db_checks", "Checks run, by check and result", ["check", "result"], registry=registry
        ),
        last_success=Gauge(
            "kata_db_last_success_timestamp_seconds",
            "Unix time at the end of the last round in which every check passed",
            registry=registry,
        ),
        pooled=Gauge("kata_db_pooled", "1 when the connection goes through a pooler", registry=registry),
        pool_connections=Gauge(
            "kata_db_pool_connections",
            "The probe's own database connections by state",
            ["state"],
            registry=registry,
        ),
        build_info=Gauge(
            "kata_db_build_info", "The probe's version, value always 1", ["version"], registry=registry
        ),
        recorders={check.name: check.metrics(registry) for check in checks},
    )
    ProcessCollector(registry=registry)
    metrics.build_info.labels(version=version).set(1)
    for check in checks:
        metrics.check_duration.labels(check=check.name)
        for result in RESULTS:
            metrics.checks.labels(check=check.name, result=result)
    for state in STATES:
        metrics.pool_connections.labels(state=state)
    return metrics
