"""Benchmark 6: /livez latency of a real `kata-probe` process while its PostgreSQL is frozen
(SIGSTOP on the postmaster and every backend), beside the healthy case, measured in the same run.

kubelet opens a new connection for each probe: so does every request here, one after another.
"""

from __future__ import annotations

import os
import sys
import time

from bench import report, servers
from localpg.throwaway import running_server, wheel_bin_dir

INTERVAL, TIMEOUT = 0.5, 0.3
# kubelet's limit for a liveness answer: timeoutSeconds of the livenessProbe in deploy/k8s.
LIVENESS_TIMEOUT = 2.0


def sample(probe: servers.Server, count: int) -> tuple[list[float], int]:
    """Milliseconds of `count` sequential /livez requests, and how many were not a 200 in time."""
    samples, failed = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            status, _body = probe.get("/livez", timeout=LIVENESS_TIMEOUT)
        except OSError:  # URLError and socket timeouts: no answer within the limit
            status = 0
        samples.append((time.perf_counter() - started) * 1000)
        failed += status != 200
    return samples, failed


def row(case: str, samples: list[float], failed: int, healthy_p99: float) -> list[object]:
    p99 = report.percentile(samples, 99)
    return [
        case,
        len(samples),
        failed,
        f"{report.median(samples):.2f}",
        f"{p99:.2f}",
        f"{max(samples):.2f}",
        report.ratio(p99, healthy_p99),
    ]


def run() -> str:
    count = int(os.environ.get("BENCH_LIVENESS_REQUESTS", "2000"))
    with running_server(wheel_bin_dir()) as pg:
        url = pg.url(pg.create_database("liveness"))
        servers.migrate(url)
        settings = {"PROBE_INTERVAL": str(INTERVAL), "PROBE_TIMEOUT": str(TIMEOUT)}
        with servers.probe(url, **settings) as probe:
            print("bench: liveness, healthy database", file=sys.stderr)
            healthy = sample(probe, count)
            with pg.frozen():
                probe.wait_for("/readyz", 503)
                print("bench: liveness, frozen database", file=sys.stderr)
                frozen = sample(probe, count)
            probe.wait_for("/readyz", 200)
            print("bench: liveness, database resumed", file=sys.stderr)
            resumed = sample(probe, count)
        load = servers.load_average()
    healthy_p99 = report.percentile(healthy[0], 99)
    rows = [
        row("healthy", *healthy, healthy_p99),
        row("frozen (SIGSTOP)", *frozen, healthy_p99),
        row("resumed (SIGCONT)", *resumed, healthy_p99),
    ]
    return report.table(
        f"Liveness during a frozen database: sequential /livez, new connection each, "
        f"interval {INTERVAL:g} s, timeout {TIMEOUT:g} s (load {load}); "
        f"kubelet's limit is {LIVENESS_TIMEOUT:g} s",
        ["database", "requests", "not 200 within limit", "p50 ms", "p99 ms", "max ms", "p99 vs healthy"],
        rows,
    )
