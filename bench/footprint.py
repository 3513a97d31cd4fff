"""Benchmark 4: probe RSS after start and after 100,000 and 200,000 requests, and the time
from spawning the process to the first ready answer (median of BENCH_REPEATS starts)."""

from __future__ import annotations

import os
import sys

from bench import report, servers
from localpg.throwaway import running_server, wheel_bin_dir

REQUESTS = 100_000


def run() -> str:
    starts = int(os.environ.get("BENCH_REPEATS", "5"))
    with running_server(wheel_bin_dir()) as pg:
        url = pg.url(pg.create_database("footprint"))
        servers.migrate(url)
        ready_times = []
        for _ in range(starts):
            with servers.probe(url) as probe:
                ready_times.append(probe.wait_for("/readyz"))
        with servers.baseline() as bare:
            bare_rss = bare.rss_mib()
        print("bench: footprint 2 x 100,000 requests", file=sys.stderr)
        with servers.probe(url) as probe:
            rss = [probe.rss_mib()]
            for _ in range(2):
                servers.hey(probe.url("/readyz"), REQUESTS)
                rss.append(probe.rss_mib())
    rows = [
        [
            "startup to first ready /readyz (s)",
            f"{report.median(ready_times):.3f}",
            f"median of {starts}; spawn -> 200",
        ],
        ["RSS after start (MiB)", f"{rss[0]:.1f}", f"bare aiohttp handler: {bare_rss:.1f}"],
        [f"RSS after {REQUESTS:,} requests (MiB)", f"{rss[1]:.1f}", f"{rss[1] - rss[0]:+.1f}"],
        [
            f"RSS after {2 * REQUESTS:,} requests (MiB)",
            f"{rss[2]:.1f}",
            f"{rss[2] - rss[1]:+.1f} over the second 100,000 (growth if > ~1)",
        ],
    ]
    return report.table("Footprint", ["measure", "value", "note"], rows)
