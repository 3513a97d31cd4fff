"""Benchmark 14: what 0006 (`contexts_parent_id_idx`) buys, and what building it costs the application.

On a database at version 5 holding BENCH_FORK_CONTEXTS (1,000,000) contexts, a tenth of them forks
of BENCH_FORK_PARENTS (10,000) parents, `EXPLAIN (ANALYZE, BUFFERS)` of the two lookups on
`contexts.parent_id`, before and after 0006:

- the fork listing, `SELECT ... FROM contexts WHERE parent_id = $1`, as a prepared statement's
  generic plan (the plan a driver's prepared statement ends up with);
- a parent's hard delete, `DELETE FROM contexts WHERE id = $1`, whose `ON DELETE SET NULL` runs
  `UPDATE ONLY contexts SET parent_id = NULL WHERE $1 = parent_id` in a trigger (EXPLAIN shows
  the trigger's time, not its plan: that UPDATE is explained on its own too). Each in a
  transaction rolled back, so before and after see the same rows.

Each figure is the median of BENCH_FORK_REPEATS (5) warm runs. Between the two, `kata-migrate up`
applies 0006 while bench/workload.py's writers and readers run (as bench/live_load.py): the worst
operation started during the build and the errors, against issue 21's goal (< 100 ms, 0 errors).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import live_load, report, servers, workload
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir

INDEX_FILE = "0006_contexts_parent_id_idx.sql"
# Contexts get fixed ids (md5 of their number) so a fork can name its parent in the same INSERT.
FILL = """
INSERT INTO contexts (id, name, latest_version, parent_id, fork_version)
    SELECT md5(g::text)::uuid, 'context ' || g, 3,
           CASE WHEN g > {parents} AND g % 10 = 0 THEN md5((1 + g % {parents})::text)::uuid END,
           CASE WHEN g > {parents} AND g % 10 = 0 THEN 2 END
    FROM generate_series(1, {contexts}) g;
"""
FORKS = "SELECT id, name, fork_version, created_at FROM contexts WHERE parent_id = $1"
SET_NULL = "UPDATE ONLY contexts SET parent_id = NULL WHERE $1 = parent_id"
HARD_DELETE = "DELETE FROM contexts WHERE id = $1"


@dataclass(frozen=True)
class Explained:
    """One EXPLAIN (ANALYZE, BUFFERS): the scan node, execution and SET NULL trigger time, buffers."""

    node: str
    ms: float
    trigger_ms: float
    hit: int
    read: int

    def cells(self) -> list[object]:
        trigger = f" (SET NULL trigger {self.trigger_ms:,.2f})" if self.trigger_ms else ""
        return [self.node, f"{self.ms:,.2f}{trigger}", f"{self.hit:,} hit, {self.read:,} read"]


def scan_node(plan: dict[str, object]) -> str:
    """The nodes that read contexts, outermost first (a DELETE's or UPDATE's ModifyTable left out)."""
    nodes: list[str] = []
    while True:
        index = plan.get("Index Name")
        if plan["Node Type"] != "ModifyTable":
            nodes.append(f"{plan['Node Type']} using {index}" if index else str(plan["Node Type"]))
        children = plan.get("Plans")
        if not isinstance(children, list) or not children:
            return " > ".join(nodes)
        plan = children[0]


async def explain(conn: asyncpg.Connection, sql: str, parent: str) -> Explained:
    """`sql` as a generic prepared plan, explained with ANALYZE and BUFFERS in a transaction rolled
    back after, so every run (and the run after 0006) sees the same rows."""
    await conn.execute(f"PREPARE bench_op(uuid) AS {sql}")
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE bench_op('{parent}')")
    finally:
        await transaction.rollback()
        await conn.execute("DEALLOCATE bench_op")
    [document] = json.loads(raw)
    top = document["Plan"]
    triggers = [t for t in document.get("Triggers", []) if "parent_id" in str(t.get("Constraint Name"))]
    return Explained(
        scan_node(top),
        float(document["Execution Time"]),
        sum(float(t["Time"]) for t in triggers),
        int(top["Shared Hit Blocks"]),
        int(top["Shared Read Blocks"]),
    )


async def explain_all(url: str, parent: str, repeats: int) -> dict[str, Explained]:
    """Each operation's median run of `repeats` (the buffers of the last), on a fresh session so
    no plan cached before the index existed is reused."""
    conn = await asyncpg.connect(url)
    try:
        found: dict[str, Explained] = {}
        for label, sql in OPERATIONS.items():
            runs = [await explain(conn, sql, parent) for _ in range(repeats)]
            median = statistics.median(r.ms for r in runs)
            trigger = statistics.median(r.trigger_ms for r in runs)
            found[label] = Explained(runs[-1].node, median, trigger, runs[-1].hit, runs[-1].read)
        return found
    finally:
        await conn.close()


OPERATIONS = {
    "fork listing (SELECT ... WHERE parent_id = $1)": FORKS,
    "parent's hard delete (DELETE ... WHERE id = $1)": HARD_DELETE,
    "its ON DELETE SET NULL (UPDATE ... WHERE $1 = parent_id)": SET_NULL,
}


def context_id(number: int) -> str:
    """The id FILL gives context `number`."""
    return str(uuid.UUID(hashlib.md5(str(number).encode(), usedforsecurity=False).hexdigest()))


def image_folder(up_to: int) -> Path:
    """The shipped migrations 1..up_to with their snapshots: an image at that version."""
    source = servers.REPO / "migrations"
    folder = Path(tempfile.mkdtemp(prefix=f"kata-bench-forks-{up_to}-"))
    (folder / "snapshots").mkdir()
    for sql in sorted(source.glob("[0-9]*_*.sql"))[:up_to]:
        shutil.copy(sql, folder / sql.name)
        shutil.copy(source / "snapshots" / f"{sql.name[:4]}.json", folder / "snapshots")
    return folder


async def build_under_load(
    url: str, folder: Path, ids: list[str], load: workload.Load
) -> tuple[list[object], float]:
    """`up` applying 0006 alone while the application's load runs: live_load's verdict row and
    how long the file took."""
    rec = workload.Recording()
    async with workload.running(url, ids, load, rec):
        quiet_start = time.monotonic()
        await asyncio.sleep(live_load.QUIET_SECONDS)  # the same load with no migration: the baseline
        quiet = live_load.FileRun("no migration", quiet_start, time.monotonic())
        runs, code, last = await live_load.run_up(url, folder)
    if code != 0 or [r.file for r in runs] != [INDEX_FILE]:
        raise RuntimeError(f"kata-migrate up exited {code}, applied {[r.file for r in runs]}: {last}")
    build = runs[0]
    during = len([op for op in rec.ops if build.start <= op.start < build.end])
    return [*live_load.target(quiet, runs, rec), during], build.end - build.start


def fill(pg: PostgresServer, database: str, contexts: int, parents: int) -> None:
    started = time.monotonic()
    pg.psql(FILL.format(contexts=contexts, parents=parents), database)
    pg.psql("VACUUM ANALYZE contexts", database)
    forks = pg.psql("SELECT count(*) FROM contexts WHERE parent_id IS NOT NULL", database)
    size = pg.psql("SELECT pg_size_pretty(pg_total_relation_size('contexts'))", database)
    print(
        f"bench: fork_index filled {contexts:,} contexts ({int(forks):,} forks of {parents:,} parents, "
        f"{size}) in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )


def run() -> str:
    contexts, parents = (
        live_load.env_int("BENCH_FORK_CONTEXTS", 1_000_000),
        live_load.env_int("BENCH_FORK_PARENTS", 10_000),
    )
    repeats = live_load.env_int("BENCH_FORK_REPEATS", 5)
    load = workload.Load(writes_per_s=float(live_load.env_int("BENCH_LIVE_WRITES_PER_S", 500)))
    latest = len(list((servers.REPO / "migrations").glob("[0-9]*_*.sql")))
    with running_server(wheel_bin_dir(16)) as pg:
        database = pg.create_database("forks")
        url = pg.url(database)
        argv, env = live_load.migrator(url, "up", "--migrations", str(image_folder(latest - 1)))
        subprocess.run(argv, env=env, cwd=servers.source(), check=True, capture_output=True)
        fill(pg, database, contexts, parents)
        parent = context_id(1)  # has contexts // 10 // parents forks, as every parent
        before = asyncio.run(explain_all(url, parent, repeats))
        ids = [context_id(n) for n in range(1, contexts + 1, max(1, contexts // 20_000))]
        print("bench: fork_index: up (0006) under load", file=sys.stderr)
        verdict, build_s = asyncio.run(build_under_load(url, image_folder(latest), ids, load))
        after = asyncio.run(explain_all(url, parent, repeats))
    forks_each = contexts // 10 // parents
    rows = [[label, *before[label].cells(), *after[label].cells()] for label in OPERATIONS]
    return (
        report.table(
            f"0006 on {contexts:,} contexts ({forks_each} forks per parent): EXPLAIN (ANALYZE, BUFFERS), "
            f"median of {repeats}, generic plan",
            [
                "operation",
                "before: scan",
                "before: ms",
                "before: buffers",
                "after: scan",
                "after: ms",
                "after: buffers",
            ],
            rows,
        )
        + "\n"
        + report.table(
            f"While 0006 built ({build_s:.1f} s) under {load.writers} writers ({load.writes_per_s:.0f} "
            f"writes/s) and {load.readers} readers: the worst operation against the target "
            f"(< {live_load.TARGET_MS:.0f} ms, 0 errors; load {servers.load_average()})",
            [
                "worst write ms",
                "worst read ms",
                "errors",
                "no migration: worst op ms",
                "verdict",
                "operations during the build",
            ],
            [verdict],
        )
    )
