"""Benchmark 6: `kata-migrate up` (0002 onwards) on a filled database while the application writes.

The first production run adopts a database the application filled: `baseline 1`, then `up`.
This builds one filled database (contexts, messages, some 1536-dimension embeddings), clones it
per variant, and runs `up` on each clone under the same load (bench/workload.py): the migrations
as shipped in 0.1.0's first cut (commit e53ca71), the lock-safe rewrite, and the rewrite with the
index build limited to 0 parallel workers (to tell CPU starvation from lock waits).

Per migration file: its duration, the writes completed, the worst write and read latency (of
operations started while the file ran), the longest gap with no write completed, the errors, and
the most of our sessions seen waiting on a lock. "no migration" is the same load before `up`.

Knobs: BENCH_LIVE_CONTEXTS (20000), BENCH_LIVE_MESSAGES (50 per context), BENCH_LIVE_EMBEDDINGS
(5000), BENCH_LIVE_WRITES_PER_S (500), BENCH_LIVE_VARIANTS (shipped,rewritten,rewritten-0-workers;
also rewritten-512MB-1-worker: the index build with tuned settings).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import report, servers, workload
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir

SHIPPED_COMMIT = "e53ca71"
QUIET_SECONDS = 3.0
DEFAULT_VARIANTS = ("shipped", "rewritten", "rewritten-0-workers")
TARGET_MS = 100.0  # issue 13: no operation waits longer than 100 ms while up runs
FILL = """
CREATE EXTENSION IF NOT EXISTS vector;
{schema}
CREATE FUNCTION pg_temp.random_embedding(seed bigint) RETURNS vector LANGUAGE sql VOLATILE AS
    $$ SELECT array_agg(random() + seed * 0)::vector FROM generate_series(1, 1536) $$;
INSERT INTO contexts (name, message_count, total_tokens, latest_version)
    SELECT 'context ' || g, {messages}, {messages} * 10, {messages} FROM generate_series(1, {contexts}) g;
INSERT INTO messages (context_id, version, role, content, token_count)
    SELECT c.id, v, (ARRAY['user', 'assistant']::message_role[])[1 + v % 2],
           repeat('a message the application stored. ', 6), 10
    FROM contexts c, generate_series(1, {messages}) v;
UPDATE messages m SET embedding = pg_temp.random_embedding(e.n)
    FROM (SELECT id, row_number() OVER () AS n FROM messages LIMIT {embeddings}) e WHERE m.id = e.id;
"""


@dataclass(frozen=True)
class Variant:
    name: str
    files: dict[str, str]  # file name -> SQL of 0002 onwards
    settings: tuple[str, ...] = ()  # ALTER DATABASE ... SET, seen by the migrator's session


@dataclass(frozen=True)
class FileRun:
    file: str
    start: float
    end: float


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def shipped_files() -> dict[str, str]:
    names = subprocess.run(
        ["git", "-C", str(servers.REPO), "ls-tree", "--name-only", SHIPPED_COMMIT, "migrations/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        Path(n).name: subprocess.run(
            ["git", "-C", str(servers.REPO), "show", f"{SHIPPED_COMMIT}:{n}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for n in names
        if n.endswith(".sql") and not Path(n).name.startswith("0001_")
    }


def rewritten_files() -> dict[str, str]:
    folder = servers.REPO / "migrations"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.sql")) if not p.name.startswith("0001_")}


def variants() -> list[Variant]:
    known = {
        "shipped": Variant("shipped", shipped_files()),
        "rewritten": Variant("rewritten", rewritten_files()),
        "rewritten-0-workers": Variant(
            "rewritten-0-workers", rewritten_files(), ("max_parallel_maintenance_workers = 0",)
        ),
        "rewritten-512MB-1-worker": Variant(
            "rewritten-512MB-1-worker",
            rewritten_files(),
            ("maintenance_work_mem = '512MB'", "max_parallel_maintenance_workers = 1"),
        ),
    }
    wanted = os.environ.get("BENCH_LIVE_VARIANTS", ",".join(DEFAULT_VARIANTS)).split(",")
    return [known[name] for name in wanted]


def migrations_folder(variant: Variant) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"kata-bench-live-{variant.name}-"))
    initial = next((servers.REPO / "migrations").glob("0001_*.sql"))
    (folder / initial.name).write_bytes(initial.read_bytes())
    for name, sql in variant.files.items():
        (folder / name).write_text(sql)
    return folder


def migrator(url: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The migrator's command line and environment (JSON log events on stderr)."""
    env = {**servers.source_env(), "DATABASE_URL": url, "MIGRATOR_LOG_FORMAT": "json"}
    return [sys.executable, "-m", "migrator", *args], env


async def run_up(url: str, folder: Path) -> tuple[list[FileRun], int, str]:
    """`kata-migrate up` as a process; each file's start and end from its log events as they
    arrive, the exit code and the last log line."""
    argv, env = migrator(url, "up", "--migrations", str(folder))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=servers.source(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    started: dict[str, float] = {}
    runs: list[FileRun] = []
    last = ""
    assert proc.stderr is not None
    async for raw in proc.stderr:
        now = time.monotonic()
        last = raw.decode().strip()
        with_json = last.startswith("{")
        event = json.loads(last) if with_json else {}
        if event.get("event") == "migration_started":
            started[str(event["file"])] = now
        elif event.get("event") == "migration_applied":
            runs.append(FileRun(str(event["file"]), started[str(event["file"])], now))
        elif event.get("event") == "migration_failed":
            runs.extend(FileRun(f, s, now) for f, s in started.items() if f not in {r.file for r in runs})
    return runs, await proc.wait(), last


def windows(runs: list[FileRun]) -> list[FileRun]:
    """Each file from its start to the next file's start (the last to its own end), so every
    operation counts once: for the file that was running when it started."""
    ends = [later.start for later in runs[1:]] + [runs[-1].end] if runs else []
    return [FileRun(run.file, run.start, max(run.end, end)) for run, end in zip(runs, ends, strict=True)]


def started_in(run: FileRun, rec: workload.Recording, kind: str) -> list[workload.Op]:
    return [op for op in rec.ops if op.kind == kind and run.start <= op.start < run.end]


def summarise(label: str, run: FileRun, window: FileRun, rec: workload.Recording) -> list[object]:
    writes, reads = started_in(window, rec, "write"), started_in(window, rec, "read")
    done = sorted(op.end for op in rec.ops if op.kind == "write" and not op.error)
    gaps = [b - a for a, b in itertools.pairwise(done) if window.start <= (a + b) / 2 < window.end]
    waiters = [w.lock_waiters for w in rec.watches if window.start <= w.at < window.end]
    return [
        run.file.removesuffix(".sql"),
        label,
        f"{(run.end - run.start) * 1000:,.0f}",
        sum(1 for op in writes if not op.error),
        f"{max((op.ms for op in writes), default=0):,.1f}",
        f"{max((op.ms for op in reads), default=0):,.1f}",
        f"{max(gaps, default=0) * 1000:,.1f}",
        sum(1 for op in writes + reads if op.error),
        max(waiters, default=0),
    ]


def stall(window: FileRun, rec: workload.Recording) -> list[object]:
    """The worst write of a file: when it started in the file, the build phase then, lock waiters."""
    writes = started_in(window, rec, "write")
    if not writes:
        return ["-", "-", "-", "-", "-"]
    worst = max(writes, key=lambda op: op.ms)
    during = [w for w in rec.watches if worst.start - 0.05 <= w.at <= worst.end]
    phases = sorted({w.phase for w in during if w.phase}) or ["-"]
    activity = sorted({a for w in during for a in w.activity.split(",") if a}) or ["-"]
    return [
        f"{worst.ms:,.1f}",
        f"{(worst.start - window.start):.2f}",
        "; ".join(phases),
        max((w.lock_waiters for w in during), default=0),
        " ".join(activity),
    ]


async def measure(url: str, folder: Path, load: workload.Load) -> tuple[list[FileRun], workload.Recording]:
    conn = await asyncpg.connect(url)
    ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM contexts")]
    await conn.close()
    rec = workload.Recording()
    async with workload.running(url, ids, load, rec):
        quiet_start = time.monotonic()
        await asyncio.sleep(QUIET_SECONDS)  # the same load with no migration: the baseline
        quiet = FileRun("no migration", quiet_start, time.monotonic())
        runs, code, last = await run_up(url, folder)
    if code != 0:
        raise RuntimeError(f"kata-migrate up exited {code}: {last}")
    return [quiet, *runs], rec


def fill(pg: PostgresServer) -> str:
    contexts, per_context = env_int("BENCH_LIVE_CONTEXTS", 20_000), env_int("BENCH_LIVE_MESSAGES", 50)
    embeddings = env_int("BENCH_LIVE_EMBEDDINGS", 5_000)
    template = pg.create_database("live_template")
    schema = next((servers.REPO / "migrations").glob("0001_*.sql")).read_text()
    started = time.monotonic()
    pg.psql(
        FILL.format(schema=schema, contexts=contexts, messages=per_context, embeddings=embeddings), template
    )
    pg.psql("VACUUM ANALYZE contexts", template)  # each alone: VACUUM cannot run in a transaction block
    pg.psql("VACUUM ANALYZE messages", template)
    size = pg.psql(f"SELECT pg_size_pretty(pg_database_size('{template}'))")
    print(
        f"bench: live_load filled {contexts:,} contexts, {contexts * per_context:,} messages, "
        f"{embeddings:,} embeddings ({size}) in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return template


HEADER = [
    "file",
    "variant",
    "ms",
    "writes",
    "worst write ms",
    "worst read ms",
    "longest no-write gap ms",
    "errors",
    "max lock waiters",
]


def run() -> str:
    load = workload.Load(writes_per_s=float(env_int("BENCH_LIVE_WRITES_PER_S", 500)))
    rows: list[list[object]] = []
    verdicts: list[list[object]] = []
    stalls: list[list[object]] = []
    with running_server(wheel_bin_dir(16)) as pg:
        template = fill(pg)
        for variant in variants():
            database = f"live_{variant.name.replace('-', '_')}"
            pg.psql(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
            for setting in variant.settings:
                pg.psql(f'ALTER DATABASE "{database}" SET {setting}')
            folder = migrations_folder(variant)
            argv, env = migrator(pg.url(database), "baseline", "1", "--migrations", str(folder))
            subprocess.run(argv, env=env, cwd=servers.source(), check=True, capture_output=True)
            print(f"bench: live_load {variant.name}: up under load", file=sys.stderr)
            runs, rec = asyncio.run(measure(pg.url(database), folder, load))
            verdicts.append([variant.name, *target(runs[0], runs[1:], rec)])
            spans = [runs[0], *windows(runs[1:])]
            rows.extend(summarise(variant.name, r, w, rec) for r, w in zip(runs, spans, strict=True))
            stalls.extend(
                [w.file.removesuffix(".sql"), variant.name, *stall(w, rec)]
                for w in spans
                if w.file.startswith("0005")
            )
            pg.drop_database(database)
    rows.sort(key=lambda r: (str(r[0]) != "no migration", str(r[0])))
    title = (
        f"Live load: up 0002 onwards under {load.writers} writers ({load.writes_per_s:.0f} writes/s) "
        f"and {load.readers} readers (load {servers.load_average()})"
    )
    return (
        report.table(title, HEADER, rows)
        + "\n"
        + report.table(
            f"While up ran: the worst operation against the target (< {TARGET_MS:.0f} ms, 0 errors)",
            ["variant", "worst write ms", "worst read ms", "errors", "no migration: worst op ms", "verdict"],
            verdicts,
        )
        + "\n"
        + report.table(
            "The worst write during 0005: when, build phase, sessions on a lock, what ours waited on",
            [
                "file",
                "variant",
                "worst write ms",
                "s into the file",
                "build phase",
                "lock waiters",
                "our sessions",
            ],
            stalls,
        )
    )


def target(quiet: FileRun, runs: list[FileRun], rec: workload.Recording) -> list[object]:
    """Worst write and read started while `up` ran, errors, the quiet baseline, and the verdict."""
    during = FileRun("up", runs[0].start, runs[-1].end) if runs else quiet
    writes, reads = started_in(during, rec, "write"), started_in(during, rec, "read")
    worst_write = max((op.ms for op in writes), default=0.0)
    worst_read = max((op.ms for op in reads), default=0.0)
    errors = sum(1 for op in writes + reads if op.error)
    quiet_ops = started_in(quiet, rec, "write") + started_in(quiet, rec, "read")
    baseline = max((op.ms for op in quiet_ops), default=0.0)
    ok = max(worst_write, worst_read) < TARGET_MS and errors == 0
    return [f"{worst_write:,.1f}", f"{worst_read:,.1f}", errors, f"{baseline:,.1f}", report.verdict(ok)]
