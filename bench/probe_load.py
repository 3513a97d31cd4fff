"""Benchmark 1: the probe under wrk load beside a bare aiohttp handler in the same run.

wrk -t2 -c20 -d5s --latency against /readyz, /healthz and /metrics and the bare handler,
interleaved, BENCH_REPEATS rounds (default 3); medians of requests/s, p50 and p99.
"""

from __future__ import annotations

import os
import sys

from bench import report, servers
from localpg.throwaway import running_server, wheel_bin_dir

PATHS = ("/readyz", "/healthz", "/metrics")
TARGET = 0.9


def run() -> str:
    rounds = int(os.environ.get("BENCH_REPEATS", "3"))
    seconds = int(os.environ.get("BENCH_WRK_SECONDS", "5"))
    results: dict[str, list[servers.Load]] = {name: [] for name in ("bare", *PATHS)}
    with running_server(wheel_bin_dir()) as pg:
        url = pg.url(pg.create_database("probe_load"))
        servers.migrate(url)
        with servers.baseline() as bare, servers.probe(url) as probe:
            for index in range(rounds):
                print(f"bench: probe_load round {index + 1}/{rounds}", file=sys.stderr)
                results["bare"].append(servers.wrk(bare.url("/"), seconds))
                for path in PATHS:
                    results[path].append(servers.wrk(probe.url(path), seconds))
    base = report.median([r.rps for r in results["bare"]])
    rows = []
    for name, loads in results.items():
        rps = report.median([r.rps for r in loads])
        target = f">= {TARGET}x" if name == "/readyz" else ""
        verdict = report.verdict(rps / base >= TARGET) if name == "/readyz" else ""
        rows.append(
            [
                name,
                f"{rps:,.0f}",
                report.ratio(rps, base),
                f"{report.median([r.p50_ms for r in loads]):.2f}",
                f"{report.median([r.p99_ms for r in loads]):.2f}",
                sum(r.errors for r in loads),
                target,
                verdict,
            ]
        )
    return report.table(
        f"Probe under load: wrk -t2 -c20 -d{seconds}s, median of {rounds} (load {servers.load_average()})",
        ["endpoint", "req/s", "vs bare", "p50 ms", "p99 ms", "non-2xx", "target", "verdict"],
        rows,
    )
