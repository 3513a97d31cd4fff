"""Benchmark 3: the latency the probe reports (JSON latencyMs) against a raw asyncpg `SELECT 1`
round trip measured in the same run, both medians."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import asyncpg

from bench import report, servers
from localpg.throwaway import running_server, wheel_bin_dir

TARGET = 1.5
INTERVAL = 0.1


async def raw_round_trips(url: str, count: int, statement_cache_size: int = 100, gap: float = 0.0) -> float:
    """Median ms of `SELECT 1` on one connection; the default cache makes it one round trip.

    With `gap`, one query per `gap` seconds, the probe's cadence: client and backend are idle
    (and their CPUs maybe asleep) before each query, as they are before each probe round.
    """
    conn = await asyncpg.connect(url, statement_cache_size=statement_cache_size)
    try:
        await conn.fetchval("SELECT 1")
        samples = []
        for _ in range(count):
            if gap:
                await asyncio.sleep(gap)
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return report.median(samples)


def probe_samples(probe: servers.Server, count: int) -> list[float]:
    """Distinct rounds' latencyMs read from /healthz (one per round, keyed by checkedAt)."""
    seen: dict[object, float] = {}
    deadline = time.monotonic() + count * INTERVAL * 4 + 10
    while len(seen) < count and time.monotonic() < deadline:
        document = probe.json("/healthz")
        checks = document.get("checks")
        database = checks.get("database") if isinstance(checks, dict) else None
        if isinstance(database, dict) and isinstance(database.get("latencyMs"), int | float):
            seen[document.get("checkedAt")] = float(database["latencyMs"])
        time.sleep(INTERVAL / 2)
    return list(seen.values())


def run() -> str:
    count = int(os.environ.get("BENCH_LATENCY_SAMPLES", "200"))
    spaced_count = count // 2
    with running_server(wheel_bin_dir()) as pg:
        url = pg.url(pg.create_database("latency"))
        servers.migrate(url)
        hot = [asyncio.run(raw_round_trips(url, 2000))]
        spaced = [asyncio.run(raw_round_trips(url, spaced_count, gap=INTERVAL))]
        print("bench: latency sampling the probe", file=sys.stderr)
        with servers.probe(url, PROBE_INTERVAL=str(INTERVAL), PROBE_TIMEOUT=str(INTERVAL / 2)) as probe:
            samples = probe_samples(probe, count)
        hot.append(asyncio.run(raw_round_trips(url, 2000)))
        spaced.append(asyncio.run(raw_round_trips(url, spaced_count, gap=INTERVAL)))
    raw_hot, raw_spaced, reported = report.median(hot), report.median(spaced), report.median(samples)
    rows = [
        ["raw asyncpg SELECT 1, back to back", f"{raw_hot:.3f}", "1.00x", "", "", ""],
        [
            f"raw asyncpg SELECT 1, one per {INTERVAL:g} s",
            f"{raw_spaced:.3f}",
            report.ratio(raw_spaced, raw_hot),
            "1.00x",
            "",
            "",
        ],
        [
            f"probe latencyMs ({len(samples)} rounds, interval {INTERVAL:g} s)",
            f"{reported:.3f}",
            report.ratio(reported, raw_hot),
            report.ratio(reported, raw_spaced),
            f"<= {TARGET}x",
            report.verdict(reported / raw_spaced <= TARGET),
        ],
    ]
    return report.table(
        "Latency fidelity: median ms (the verdict compares like with like: same cadence)",
        ["measure", "ms", "vs back to back", "vs same cadence", "target", "verdict"],
        rows,
    )
