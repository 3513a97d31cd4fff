"""Benchmark 5: kata-migrate against dbmate, yoyo and Alembic on the same PostgreSQL, same SQL.

Whole process, wall clock, median of BENCH_REPEATS runs (default 5), each on a fresh database:
apply 1, 100 and 500 trivial migrations; a no-op run with 100 applied; growth from 10 to 1,000
files; and round trips and transactions per migration, counted by a relay and pg_stat_database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import peers, report
from localpg.relay import Relay
from localpg.throwaway import SUPERUSER, SUPERUSER_PASSWORD, PostgresServer, running_server, wheel_bin_dir

APPLY_SIZES = (1, 100, 500)
NOOP_SIZE = 100
GROWTH_SIZES = (10, 100, 1000)
SERVER_SETTINGS = ("max_locks_per_transaction=256",)


class ToolFailed(RuntimeError):
    pass


def repeats() -> int:
    return int(os.environ.get("BENCH_REPEATS", "5"))


def tool_url(tool: peers.Tool, port: int, database: str) -> str:
    return f"{tool.url_scheme}://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/{database}?sslmode=disable"


def run_tool(tool: peers.Tool, folder: Path, url: str) -> float:
    """Run the tool's apply command once; seconds of wall clock, whole process."""
    command = tool.command(folder, url)
    started = time.perf_counter()
    result = subprocess.run(command, env=tool.env(url), capture_output=True, text=True, cwd=folder)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise ToolFailed(f"{tool.name} exited {result.returncode}: {(result.stderr or result.stdout)[-800:]}")
    return elapsed


def layout(tool: peers.Tool, count: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"kata-bench-{tool.name}-"))
    tool.write(folder, count)
    return folder


def measure_apply(server: PostgresServer, tool: peers.Tool, count: int, noop: bool = False) -> float:
    """Median seconds to apply `count` files to a fresh database (or to rerun with all applied)."""
    folder = layout(tool, count)
    times = []
    for index in range(repeats()):
        database = server.create_database(f"b_{tool.name.replace('-', '_')}_{count}_{index}")
        url = tool_url(tool, server.port, database)
        if noop:
            run_tool(tool, folder, url)
        times.append(run_tool(tool, folder, url))
        server.drop_database(database)
    return report.median(times)


def xacts(server: PostgresServer, database: str) -> int:
    # Read from another database after the tool's process exited: its backend flushed on exit.
    server.psql("SELECT pg_stat_clear_snapshot()")
    return int(
        server.psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database}'")
    )


def count_costs(server: PostgresServer, tool: peers.Tool, count: int) -> tuple[int, int, int, int]:
    """(round trips, transactions) for applying `count` files, then for a no-op rerun."""
    folder = layout(tool, count)
    database = server.create_database(f"c_{tool.name.replace('-', '_')}_{count}")
    relay = Relay(server.port).start()
    try:
        url = tool_url(tool, relay.port, database)
        before = xacts(server, database)
        run_tool(tool, folder, url)
        trips_apply, xacts_apply = relay.round_trips, xacts(server, database) - before
        relay.reset()
        before = xacts(server, database)
        run_tool(tool, folder, url)
        trips_noop, xacts_noop = relay.round_trips, xacts(server, database) - before
    finally:
        relay.stop()
        server.drop_database(database)
    return trips_apply, xacts_apply, trips_noop, xacts_noop


def run(selected: tuple[str, ...] = ()) -> str:
    peers.install()
    peers.install_ours()
    tools = [t for t in peers.TOOLS if not selected or t.name in selected]
    out: list[str] = []
    with running_server(wheel_bin_dir(), settings=SERVER_SETTINGS) as server:
        timings: dict[str, dict[str, float]] = {}
        for tool in tools:
            row: dict[str, float] = {}
            try:
                for count in APPLY_SIZES:
                    print(f"bench: {tool.name} apply {count}", file=sys.stderr)
                    row[f"apply {count}"] = measure_apply(server, tool, count)
                print(f"bench: {tool.name} no-op ({NOOP_SIZE} applied)", file=sys.stderr)
                row["no-op"] = measure_apply(server, tool, NOOP_SIZE, noop=True)
            except ToolFailed as exc:
                print(f"bench: {exc}", file=sys.stderr)
            timings[tool.name] = row
        columns = [f"apply {c}" for c in APPLY_SIZES] + ["no-op"]
        ours = timings.get(peers.OURS.name, {})
        rows = []
        for name, row in timings.items():
            rows.append([name, *[_cell(row.get(c), ours.get(c)) for c in columns]])
        out.append(
            report.table(
                f"Migrator vs peers: whole-process s, median of {repeats()} (ratio = kata-migrate / tool)",
                ["tool", *columns],
                rows,
            )
        )
        out.append(_targets(timings))
        out.append(_growth(server, tools))
        out.append(_costs(server, tools))
    return "\n".join(out)


def _cell(value: float | None, ours: float | None) -> str:
    if value is None:
        return "failed"
    if ours is None or ours == value:
        return f"{value:.3f}"
    return f"{value:.3f} ({ours / value:.2f}x)"


def _targets(timings: dict[str, dict[str, float]]) -> str:
    ours = timings.get(peers.OURS.name, {})
    rows = []
    checks = [(f"apply {c}", "dbmate", 1.0) for c in APPLY_SIZES] + [
        ("no-op", "yoyo", 0.5),
        ("no-op", "alembic", 0.5),
    ]
    for column, peer, target in checks:
        mine, theirs = ours.get(column), timings.get(peer, {}).get(column)
        if mine is None or theirs is None:
            rows.append([column, peer, f"<= {target}x", "n/a", "n/a"])
            continue
        rows.append(
            [column, peer, f"<= {target}x", f"{mine / theirs:.2f}x", report.verdict(mine / theirs <= target)]
        )
    return report.table("Migrator targets", ["scenario", "against", "target", "ratio", "verdict"], rows)


def _growth(server: PostgresServer, tools: list[peers.Tool]) -> str:
    rows = []
    for tool in tools:
        if tool.name not in (peers.OURS.name, peers.DBMATE_TOOL.name):
            continue
        try:
            seconds = []
            for count in GROWTH_SIZES:
                print(f"bench: growth {tool.name} {count}", file=sys.stderr)
                seconds.append(measure_apply(server, tool, count))
        except ToolFailed as exc:
            print(f"bench: {exc}", file=sys.stderr)
            continue
        per_file = [
            (seconds[i] - seconds[0]) / (GROWTH_SIZES[i] - GROWTH_SIZES[0]) * 1000
            for i in range(1, len(GROWTH_SIZES))
        ]
        rows.append([tool.name, *[f"{s:.3f}" for s in seconds], *[f"{p:.2f}" for p in per_file]])
    header = [
        "tool",
        *[f"{c} files (s)" for c in GROWTH_SIZES],
        *[f"ms/file {GROWTH_SIZES[0]}->{c}" for c in GROWTH_SIZES[1:]],
    ]
    return report.table("Growth (linear when ms/file stays flat)", header, rows)


def _costs(server: PostgresServer, tools: list[peers.Tool]) -> str:
    rows = []
    for tool in tools:
        try:
            print(f"bench: round trips {tool.name}", file=sys.stderr)
            one = count_costs(server, tool, 1)
            many = count_costs(server, tool, 101)
        except ToolFailed as exc:
            print(f"bench: {exc}", file=sys.stderr)
            continue
        rows.append(
            [
                tool.name,
                f"{(many[0] - one[0]) / 100:.2f}",
                f"{(many[1] - one[1]) / 100:.2f}",
                one[0] - (many[0] - one[0]) // 100,
                many[2],
                many[3],
            ]
        )
    return report.table(
        "Where the time goes: per migration (from 1 vs 101 files) and fixed costs",
        [
            "tool",
            "round trips/migration",
            "xacts/migration",
            "fixed round trips",
            "no-op round trips",
            "no-op xacts",
        ],
        rows,
    )
