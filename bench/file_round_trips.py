"""Benchmark: round trips a transactional migration file costs, counted by the relay.

kata-migrate `up` (in-process) applies 1 file and then 2 files of N statements each on fresh
databases; the difference is what one more file costs. Beside it, measured the same way in the
same run: the protocol before this change (BEGIN with the limits, each statement, the ledger row
with COMMIT: N + 2) and the floor (the whole file in one query: 1, which names no statement when
PostgreSQL gives no error position).
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench import report
from localpg.relay import Relay
from localpg.throwaway import SUPERUSER, SUPERUSER_PASSWORD, PostgresServer, running_server, wheel_bin_dir
from migrator.cli import run as run_migrator

STATEMENT_COUNTS = (1, 3, 10)


def file_text(version: int, statements: int) -> str:
    return "".join(f"CREATE TABLE t{version}_{i} (x int);\n" for i in range(statements))


def relay_url(relay: Relay, database: str) -> str:
    return f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{relay.port}/{database}?sslmode=disable"


def kata_trips(server: PostgresServer, relay: Relay, files: int, statements: int) -> int:
    folder = Path(tempfile.mkdtemp(prefix="kata-bench-trips-"))
    for version in range(1, files + 1):
        (folder / f"{version:04d}_f.sql").write_text(file_text(version, statements))
    database = server.create_database("rt")
    server.psql("CREATE EXTENSION vector", database)
    relay.reset()
    env = {
        "DATABASE_URL": relay_url(relay, database),
        "MIGRATIONS_DIR": str(folder),
        "MIGRATOR_LOG_FORMAT": "json",
    }
    code = run_migrator(["up"], env, io.StringIO(), io.StringIO())
    trips = relay.round_trips
    server.drop_database(database)
    if code != 0:
        raise RuntimeError(f"kata-migrate exited {code}")
    return trips


async def replay(url: str, queries: list[str]) -> None:
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        for query in queries:
            await conn.execute(query)
    finally:
        await conn.close()


def replay_trips(server: PostgresServer, relay: Relay, queries: list[str]) -> int:
    """Round trips of `queries` alone: a connection with nothing sent, subtracted."""
    database = server.create_database("rp")
    server.psql("CREATE TABLE ledger (v int)", database)
    counts = []
    for sent in ([], queries):
        relay.reset()
        asyncio.run(replay(relay_url(relay, database), sent))
        counts.append(relay.round_trips)
    server.drop_database(database)
    return counts[1] - counts[0]


def run(selected: tuple[str, ...] = ()) -> str:
    rows = []
    with running_server(wheel_bin_dir()) as server:
        relay = Relay(server.port).start()
        try:
            for n in STATEMENT_COUNTS:
                print(f"bench: round trips of a file of {n} statements", file=sys.stderr)
                ours = kata_trips(server, relay, 2, n) - kata_trips(server, relay, 1, n)
                statements = [s for s in file_text(1, n).split(";\n") if s]
                before = replay_trips(
                    server,
                    relay,
                    [
                        "BEGIN; SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = '1h'",
                        *statements,
                        "INSERT INTO ledger VALUES (1); COMMIT",
                    ],
                )
                whole = replay_trips(
                    server, relay, [f"BEGIN; {file_text(1, n)} INSERT INTO ledger VALUES (1); COMMIT"]
                )
                rows.append([n, ours, before, whole, report.verdict(ours <= n)])
        finally:
            relay.stop()
    return report.table(
        "Round trips per transactional file (relay count; kata-migrate: 2 files minus 1 file)",
        [
            "statements",
            "kata-migrate now",
            "before (statement by statement)",
            "whole file in one query",
            "<= 1 per statement",
        ],
        rows,
    )
