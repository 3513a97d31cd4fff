"""Benchmark 13: `kata-migrate repair` of a dropped HNSW index on a filled table while the
application writes (issue 18: no write waits over 100 ms).

One filled database (bench/live_load.py's fill: contexts, messages, some 1536-dimension
embeddings), migrated by `baseline 1` and `up`; then `messages_embedding_idx` is dropped and the
application's load (bench/workload.py: 8 writers, 2 readers, a watcher every 50 ms) runs through
three phases: no repair (the baseline), `kata-migrate repair` as a process, and, for contrast, the
same index restored by hand the way the issue says people did (a plain CREATE INDEX, same memory
and workers).

Per phase: its duration, the writes completed, the worst and 99th percentile write latency, the
worst read, errors, and the most of the load's sessions seen waiting on a lock at once.

Knobs: BENCH_REPAIR_CONTEXTS (2000), BENCH_REPAIR_MESSAGES (50 per context), BENCH_REPAIR_EMBEDDINGS
(5000), BENCH_REPAIR_WRITES_PER_S (300), BENCH_REPAIR_BY_HAND (1; 0 skips the contrast).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass

import asyncpg

from bench import live_load, report, servers, workload
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir

QUIET_SECONDS = 5.0
TARGET_MS = 100.0
HNSW = "CREATE INDEX messages_embedding_idx ON messages USING hnsw (embedding vector_cosine_ops)"


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float


def fill(pg: PostgresServer) -> str:
    """A database at version 5 with rows, then without its HNSW index."""
    contexts, per_context = (
        live_load.env_int("BENCH_REPAIR_CONTEXTS", 2000),
        live_load.env_int("BENCH_REPAIR_MESSAGES", 50),
    )
    embeddings = live_load.env_int("BENCH_REPAIR_EMBEDDINGS", 5000)
    database = pg.create_database("repair")
    schema = next((servers.REPO / "migrations").glob("0001_*.sql")).read_text()
    started = time.monotonic()
    sql = live_load.FILL.format(schema=schema, contexts=contexts, messages=per_context, embeddings=embeddings)
    pg.psql(sql, database)
    pg.psql("VACUUM ANALYZE messages", database)
    url = pg.url(database)
    for args in (["baseline", "1"], ["up"]):
        migrate(url, *args)
    pg.psql("DROP INDEX messages_embedding_idx", database)
    size = pg.psql(f"SELECT pg_size_pretty(pg_database_size('{database}'))")
    print(
        f"bench: repair filled {contexts:,} contexts, {contexts * per_context:,} messages, "
        f"{embeddings:,} embeddings ({size}) in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return database


def migrate(url: str, *args: str) -> None:
    argv, env = live_load.migrator(url, *args)
    result = subprocess.run(argv, env=env, cwd=servers.source(), capture_output=True, text=True)
    if result.returncode != 0:
        command = " ".join(args)
        raise RuntimeError(f"kata-migrate {command} exited {result.returncode}: {result.stderr[-800:]}")


async def run_repair(url: str) -> Phase:
    """`kata-migrate repair` as a process, from its start to its exit; RuntimeError unless it
    rebuilt the index."""
    argv, env = live_load.migrator(url, "repair")
    started = time.monotonic()
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=servers.source(), stdout=devnull, stderr=pipe
    )
    _, stderr = await proc.communicate()
    ended = time.monotonic()
    events = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "repair_done"]
    if proc.returncode != 0 or not done:
        raise RuntimeError(f"kata-migrate repair exited {proc.returncode}: {stderr.decode()[-800:]}")
    return Phase("kata-migrate repair", started, ended)


async def by_hand(url: str) -> Phase:
    """The index dropped again and built as a plain CREATE INDEX, with the migrator's settings."""
    conn = await asyncpg.connect(url, server_settings={"application_name": "by-hand"})
    try:
        await conn.execute("DROP INDEX messages_embedding_idx")
        await conn.execute("SET maintenance_work_mem = '256MB'; SET max_parallel_maintenance_workers = 1")
        started = time.monotonic()
        await conn.execute(HNSW)
        return Phase("CREATE INDEX by hand", started, time.monotonic())
    finally:
        await conn.close()


async def measure(url: str, load: workload.Load) -> tuple[list[Phase], workload.Recording]:
    conn = await asyncpg.connect(url)
    ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM contexts")]
    await conn.close()
    rec = workload.Recording()
    phases = []
    async with workload.running(url, ids, load, rec):
        quiet_start = time.monotonic()
        await asyncio.sleep(QUIET_SECONDS)  # the same load with nothing else running: the baseline
        phases.append(Phase("no repair (baseline)", quiet_start, time.monotonic()))
        phases.append(await run_repair(url))
        if live_load.env_int("BENCH_REPAIR_BY_HAND", 1):
            await asyncio.sleep(1.0)  # let the load settle between phases
            phases.append(await by_hand(url))
    return phases, rec


def summarise(phase: Phase, rec: workload.Recording) -> list[object]:
    writes = [op for op in rec.ops if op.kind == "write" and phase.start <= op.start < phase.end]
    reads = [op for op in rec.ops if op.kind == "read" and phase.start <= op.start < phase.end]
    waiters = [w.lock_waiters for w in rec.watches if phase.start <= w.at < phase.end]
    write_ms = [op.ms for op in writes]
    return [
        phase.name,
        f"{(phase.end - phase.start) * 1000:,.0f}",
        sum(1 for op in writes if not op.error),
        f"{max(write_ms, default=0):,.1f}",
        f"{report.percentile(write_ms, 99):,.1f}" if write_ms else "-",
        f"{max((op.ms for op in reads), default=0):,.1f}",
        sum(1 for op in writes + reads if op.error),
        max(waiters, default=0),
    ]


HEADER = [
    "phase",
    "ms",
    "writes",
    "worst write ms",
    "p99 write ms",
    "worst read ms",
    "errors",
    "max sessions on a lock",
]


def run() -> str:
    load = workload.Load(writes_per_s=float(live_load.env_int("BENCH_REPAIR_WRITES_PER_S", 300)))
    with running_server(wheel_bin_dir(16)) as pg:
        database = fill(pg)
        print("bench: repair under load", file=sys.stderr)
        phases, rec = asyncio.run(measure(pg.url(database), load))
    rows = [summarise(phase, rec) for phase in phases]
    worst = float(str(rows[1][3]).replace(",", ""))
    title = (
        f"Repair of messages_embedding_idx (HNSW) under {load.writers} writers ({load.writes_per_s:.0f} "
        f"writes/s) and {load.readers} readers (load {servers.load_average()}); target: worst write "
        f"< {TARGET_MS:.0f} ms during repair: {report.verdict(worst < TARGET_MS and rows[1][6] == 0)}"
    )
    return report.table(title, HEADER, rows)
