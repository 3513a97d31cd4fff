"""Benchmark 2: database transactions per 1,000 probe requests, against a handler that runs
`SELECT 1` per request through a pool as kata-context's original health endpoint did.

Counts are `xact_commit + xact_rollback` of each server's own database in pg_stat_database,
read after its connections closed (backends flush their counters on exit).
"""

from __future__ import annotations

import os
import re
import sys

from bench import report, servers
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir

TARGET = 1.0


def xacts(pg: PostgresServer, database: str) -> int:
    return int(
        pg.psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database}'")
    )


def rounds_from_metrics(text: str) -> int:
    found = re.findall(
        r'^kata_db_checks_total\{[^}]*check="database"[^}]*\}\s+([\d.e+]+)', text, re.MULTILINE
    )
    return int(sum(float(v) for v in found))


def run() -> str:
    seconds = int(os.environ.get("BENCH_DB_COST_SECONDS", "10"))
    rows = []
    with running_server(wheel_bin_dir()) as pg:
        probe_db = pg.create_database("probe_cost")
        servers.migrate(pg.url(probe_db))
        before = xacts(pg, probe_db)
        print("bench: db_cost probe (default interval)", file=sys.stderr)
        with servers.probe(pg.url(probe_db)) as probe:
            load = servers.wrk(probe.url("/readyz"), seconds)
            rounds = rounds_from_metrics(probe.get("/metrics")[1].decode())
        probe_xacts = xacts(pg, probe_db) - before

        base_db = pg.create_database("original_cost")
        before = xacts(pg, base_db)
        print("bench: db_cost query-per-request handler", file=sys.stderr)
        with servers.baseline(pg.url(base_db)) as original:
            base_load = servers.wrk(original.url("/"), seconds)
        base_xacts = xacts(pg, base_db) - before

    probe_per_k = probe_xacts / load.requests * 1000
    base_per_k = base_xacts / base_load.requests * 1000
    rows.append(
        [
            "kata-probe /readyz (interval 5 s)",
            f"{load.requests:,}",
            probe_xacts,
            rounds,
            f"{probe_xacts / max(rounds, 1):.1f}",
            f"{probe_per_k:.3f}",
            f"<= {TARGET}",
            report.verdict(probe_per_k <= TARGET),
        ]
    )
    rows.append(
        [
            "SELECT 1 per request (original)",
            f"{base_load.requests:,}",
            base_xacts,
            "-",
            "-",
            f"{base_per_k:.1f}",
            "",
            "",
        ]
    )
    table = report.table(
        f"Database cost: wrk -t2 -c20 -d{seconds}s, transactions per 1,000 requests",
        ["server", "requests", "xacts", "check rounds", "xacts/round", "xacts/1k req", "target", "verdict"],
        rows,
    )
    return table + f"\nratio original/probe: {base_per_k / max(probe_per_k, 1e-9):,.0f}x fewer transactions\n"
