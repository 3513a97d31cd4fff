"""Fixtures for the probe: a small migrations folder, its application, settings, a probe process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from localpg.throwaway import free_port
from probe.settings import ProbeSettings
from schema.catalog import read_catalog
from schema.ledger import CREATE_TABLE
from tests.conftest import Database

MIGRATIONS = {
    "0001_first.sql": "CREATE TABLE probe_first (id bigint PRIMARY KEY);\n",
    "0002_second.sql": "CREATE TABLE probe_second (id bigint PRIMARY KEY);\n",
}
# Fast rounds keep outage tests short; the timeout stays well above a loopback round (~1 ms).
FAST = {"PROBE_INTERVAL": "0.5", "PROBE_TIMEOUT": "0.3", "PROBE_SHUTDOWN_DELAY": "0"}
REPO = Path(__file__).resolve().parents[2]
# A backend's start-up reads the catalogs in a transaction of its own: one per connection opened.
TRANSACTIONS_PER_CONNECTION = 1


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """Two migrations of our own: the packaged folder is someone else's and may change."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for name, sql in MIGRATIONS.items():
        (directory / name).write_text(sql)
    return directory


def apply_migrations(database: Database, directory: Path, *, upto: int | None = None) -> None:
    """Apply files and record ledger rows as the migrator would, without depending on it."""
    database.psql(CREATE_TABLE)
    for migration in read_catalog(directory).migrations:
        if upto is not None and migration.version > upto:
            break
        database.psql(migration.sql)
        database.record(migration)


def ready_database(database: Database, directory: Path) -> None:
    """pgvector installed and every migration applied: all checks pass."""
    database.psql("CREATE EXTENSION IF NOT EXISTS vector")
    apply_migrations(database, directory)


def probe_env(url: str, directory: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "MIGRATIONS_DIR": str(directory), "PROBE_HOST": "127.0.0.1", **FAST, **extra}


def make_settings(url: str, directory: Path, **extra: str) -> ProbeSettings:
    return ProbeSettings.from_values(probe_env(url, directory, **extra))


def run_failing_start(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    """`python -m probe ARGS` with only PATH and DATABASE_URL set, for a start that must fail
    (a setting, an address): it ends by itself, its stderr collected."""
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def transactions(database: Database) -> int:
    """Transactions the server counted in `database`; exact only once the sessions measured closed."""
    sql = f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database.name}'"
    return int(database.server.psql(sql))


async def no_sessions(database: Database) -> bool:
    """No session is open on `database`: each has flushed its counters as it exited."""
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database.name}'"
    return int(database.server.psql(sql)) == 0


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `condition` until true; returns the seconds it took, fails the test after `timeout`."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@dataclass
class ProbeProcess:
    """`python -m probe` on a free loopback port, its stderr kept in a file for the log checks."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> ProbeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROBE_"))}
        env.update(self.env)
        env["PROBE_PORT"] = str(self.port)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "probe", *args], env=env, stderr=log, stdout=log, cwd=REPO
            )
        return self

    def logs(self) -> str:
        return self.log_path.read_text()

    def log_lines(self) -> list[str]:
        return [line for line in self.logs().splitlines() if line]

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def probe_process(tmp_path: Path) -> Iterator[Callable[..., ProbeProcess]]:
    started: list[ProbeProcess] = []

    def start(env: dict[str, str], *args: str) -> ProbeProcess:
        probe = ProbeProcess(env, tmp_path / f"probe-{len(started)}.log").start(*args)
        started.append(probe)
        return probe

    yield start
    for probe in started:
        probe.stop()


async def wait_listening(probe: ProbeProcess, session: Any, timeout: float = 15.0) -> None:
    """Until /livez answers at all: the process has bound its port."""
    import aiohttp

    async def answers() -> bool:
        assert probe.process is not None
        if probe.process.poll() is not None:
            pytest.fail(f"probe exited with {probe.process.returncode}:\n{probe.logs()}")
        try:
            async with session.get(probe.base_url + "/livez") as response:
                return bool(response.status)
        except aiohttp.ClientConnectionError:
            return False

    await until(answers, timeout, "the probe listens")
