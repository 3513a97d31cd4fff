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


# (row label, PROBE_* settings): the shipped defaults, and the catalog compared every round to
# show what PROBE_SCHEMA_INTERVAL saves.
PROBES = (
    ("kata-probe /readyz (interval 5 s, catalog every 25 s)", {}),
    ("kata-probe /readyz (interval 5 s, catalog every round)", {"PROBE_SCHEMA_INTERVAL": "0"}),
)


def measure_probe(pg: PostgresServer, name: str, settings: dict[str, str], seconds: int) -> list[object]:
    database = pg.create_database(f"probe_cost_{len(settings)}")
    servers.migrate(pg.url(database))
    before = xacts(pg, database)
    print(f"bench: db_cost {name}", file=sys.stderr)
    with servers.probe(pg.url(database), **settings) as probe:
        load = servers.wrk(probe.url("/readyz"), seconds)
        rounds = rounds_from_metrics(probe.get("/metrics")[1].decode())
    spent = xacts(pg, database) - before
    per_k = spent / load.requests * 1000
    return [
        name,
        f"{load.requests:,}",
        spent,
        rounds,
        f"{spent / max(rounds, 1):.1f}",
        f"{per_k:.3f}",
        f"<= {TARGET}",
        report.verdict(per_k <= TARGET),
    ]


def run() -> str:
    seconds = int(os.environ.get("BENCH_DB_COST_SECONDS", "10"))
    with running_server(wheel_bin_dir()) as pg:
        rows = [measure_probe(pg, name, settings, seconds) for name, settings in PROBES]
        base_db = pg.create_database("original_cost")
        before = xacts(pg, base_db)
        print("bench: db_cost query-per-request handler", file=sys.stderr)
        with servers.baseline(pg.url(base_db)) as original:
            base_load = servers.wrk(original.url("/"), seconds)
        base_xacts = xacts(pg, base_db) - before

    probe_per_k = float(str(rows[0][5]))
    base_per_k = base_xacts / base_load.requests * 1000
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
