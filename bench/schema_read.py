"""What reading the live schema costs the probe: the catalog query of `schema.live` and the
comparison with the latest snapshot, beside a `SELECT 1` round trip measured in the same run,
and the database transactions one read makes (from pg_stat_database, read after the
connection closed because backends flush their counters late).

`python -m bench.schema_read`; BENCH_SCHEMA_READS sets the sample count (default 200).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import asyncpg

from bench import report, servers
from localpg.throwaway import running_server, wheel_bin_dir
from schema.drift import compare
from schema.live import read_live_schema
from schema.snapshot import load_snapshot

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


async def timed(url: str, count: int) -> tuple[float, float, float]:
    """Median ms of SELECT 1, of the catalog read, and of the comparison alone."""
    expected = load_snapshot(MIGRATIONS, max(int(p.stem) for p in (MIGRATIONS / "snapshots").glob("*.json")))
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        selects, reads, compares = [], [], []
        for _ in range(count):
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            selects.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            live = await read_live_schema(conn)
            reads.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assert compare(expected, live) == ()
            compares.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return report.median(selects), report.median(reads), report.median(compares)


async def transactions_per_read(url: str, reads: int) -> float:
    async def commits() -> int:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            value: int = await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
            return value
        finally:
            await conn.close()

    before = await commits()
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        for _ in range(reads):
            await read_live_schema(conn)
    finally:
        await conn.close()
    await asyncio.sleep(1.5)  # a bench, not a test: backends flush stats at most once a second
    # The two counting connections each add their own transactions: subtract them.
    return (await commits() - before - 2) / reads


def run() -> str:
    count = int(os.environ.get("BENCH_SCHEMA_READS", "200"))
    with running_server(wheel_bin_dir()) as pg:
        url = pg.url(pg.create_database("schema_read"))
        servers.migrate(url)
        select, read, comparison = asyncio.run(timed(url, count))
        per_read = asyncio.run(transactions_per_read(url, count))
    rows = [
        ["SELECT 1 round trip", f"{select:.3f}", "1.00x"],
        ["read_live_schema (one catalog query)", f"{read:.3f}", report.ratio(read, select)],
        ["compare with the latest snapshot (no I/O)", f"{comparison:.3f}", report.ratio(comparison, select)],
    ]
    table = report.table(
        f"Reading the live schema, median ms of {count} on PostgreSQL 16 loopback",
        ["operation", "median ms", "vs SELECT 1"],
        rows,
    )
    return table + f"\ndatabase transactions per read_live_schema: {per_read:.2f}\n"


if __name__ == "__main__":
    print(run())
