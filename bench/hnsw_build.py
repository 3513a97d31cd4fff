"""Benchmark 7: how long 0005's HNSW build takes with PostgreSQL's defaults and with tuned settings.

One table of N random 1536-dimension embeddings (the shape of messages.embedding); the index of
0005 (`hnsw (embedding vector_cosine_ops)`, pgvector's default m and ef_construction) is built
with each combination of maintenance_work_mem and max_parallel_maintenance_workers, in a fresh
session, median of BENCH_REPEATS builds (default 1: each build is long). The baseline is
PostgreSQL's defaults (64MB, 2 workers), measured in the same run. pgvector's notice that the
graph no longer fits into maintenance_work_mem is reported with the tuple count it gives.

Knobs: BENCH_HNSW_ROWS (12000: above the ~9,200 embeddings a 64MB graph holds, so the defaults
show their slow path), BENCH_HNSW_COMBOS (e.g. "64MB/2,512MB/1"), BENCH_REPEATS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from bench import report, servers
from localpg.throwaway import SUPERUSER_PASSWORD, PostgresServer, running_server, wheel_bin_dir

DEFAULTS = "64MB/2"
COMBOS = (DEFAULTS, "64MB/0", "256MB/0", "512MB/0", "256MB/1", "512MB/1", "512MB/2")
FILL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE embeddings (id bigint PRIMARY KEY, embedding vector(1536));
-- The vectors live in TOAST, so this heap is small and the planner would give the build no
-- worker; messages' heap is gigabytes in production, where it gets max_parallel_maintenance_workers
-- (less any that would leave a participant under 32MB of maintenance_work_mem). Ask for that.
ALTER TABLE embeddings SET (parallel_workers = 8);
CREATE FUNCTION pg_temp.random_embedding(seed bigint) RETURNS vector LANGUAGE sql VOLATILE AS
    $$ SELECT array_agg(random() + seed * 0)::vector FROM generate_series(1, 1536) $$;
INSERT INTO embeddings SELECT g, pg_temp.random_embedding(g) FROM generate_series(1, {rows}) g;
"""
NO_LONGER_FITS = re.compile(r"no longer fits into maintenance_work_mem after (\d+) tuples")


@dataclass(frozen=True)
class Build:
    seconds: float
    workers_seen: int  # parallel workers seen running (sampled every 0.2 s)
    spilled_after: str  # tuples after which the graph left memory, '-' when it fitted


def build(pg: PostgresServer, database: str, combo: str) -> Build:
    """One CREATE INDEX with `combo` (memory/workers), in a fresh psql session."""
    memory, workers = combo.split("/")
    pg.psql("DROP INDEX IF EXISTS embeddings_hnsw", database)
    sql = (
        f"SET maintenance_work_mem = '{memory}'; SET max_parallel_maintenance_workers = {workers}; "
        "SET client_min_messages = notice; "
        "CREATE INDEX embeddings_hnsw ON embeddings USING hnsw (embedding vector_cosine_ops)"
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [*pg.psql_command(database), "-c", sql],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
    )
    seen = 0
    while process.poll() is None:
        workers_now = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'")
        seen = max(seen, int(workers_now or 0))
        time.sleep(0.2)  # sampling interval of a benchmark, not a test's synchronisation
    seconds = time.monotonic() - started
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"CREATE INDEX with {combo} failed: {stderr}")
    spilled = NO_LONGER_FITS.search(stderr)
    return Build(seconds, seen, spilled[1] if spilled else "-")


def run() -> str:
    rows = int(os.environ.get("BENCH_HNSW_ROWS", "12000"))
    combos = os.environ.get("BENCH_HNSW_COMBOS", ",".join(COMBOS)).split(",")
    if DEFAULTS not in combos:
        combos.insert(0, DEFAULTS)
    repeats = int(os.environ.get("BENCH_REPEATS", "1"))
    table_rows = []
    with running_server(wheel_bin_dir(16)) as pg:
        database = pg.create_database("hnsw")
        pg.psql(FILL.format(rows=rows), database)
        pg.psql("VACUUM ANALYZE embeddings", database)
        size = pg.psql("SELECT pg_size_pretty(pg_table_size('embeddings'))", database)
        times: dict[str, float] = {}
        last: dict[str, Build] = {}
        for combo in combos:
            print(f"bench: hnsw_build {combo} x{repeats}", file=sys.stderr)
            results = [build(pg, database, combo) for _ in range(repeats)]
            times[combo] = report.median([b.seconds for b in results])
            last[combo] = results[-1]
        for combo in combos:
            memory, workers = combo.split("/")
            table_rows.append(
                [
                    memory,
                    workers,
                    last[combo].workers_seen,
                    f"{times[combo]:.1f}",
                    f"{times[combo] / times[DEFAULTS]:.2f}x",
                    last[combo].spilled_after,
                ]
            )
    title = (
        f"HNSW build of {rows:,} x 1536-dim embeddings ({size}), median of {repeats} "
        f"(2 cores, load {servers.load_average()})"
    )
    header = [
        "maintenance_work_mem",
        "max_parallel_maintenance_workers",
        "workers seen",
        "s",
        "vs defaults",
        "graph left memory after tuples",
    ]
    return report.table(title, header, table_rows)
