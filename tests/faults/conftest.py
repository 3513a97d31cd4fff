"""Fixtures for the fault suite: migrated databases, a max_connections=5 server, probe processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir
from tests.faults.probe_process import REPO, ProbeProcess


def run_migrator(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m migrator ARGS` against `url`, text logs; never raises on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MIGRATOR_", "MIGRATIONS_"))}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args, "--log-format", "text"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def migrate(url: str, *args: str) -> None:
    result = run_migrator(url, "up", *args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def small_pg() -> Iterator[PostgresServer]:
    """A server with 5 connections, 3 of them reserved for superusers: 2 for everyone else."""
    with running_server(
        wheel_bin_dir(16), settings=("max_connections=5", "superuser_reserved_connections=3")
    ) as s:
        yield s


@pytest.fixture
def start_probe(tmp_path: Path) -> Iterator[Callable[..., ProbeProcess]]:
    started: list[ProbeProcess] = []

    def start(url: str, **env: str) -> ProbeProcess:
        probe = ProbeProcess(url, tmp_path / f"probe-{len(started)}.log", dict(env)).start()
        started.append(probe)
        return probe

    yield start
    for probe in started:
        probe.stop()


def iterations(full: int, ci: int) -> int:
    """FAULT_ITERATIONS wins; otherwise the full count, or the smaller one when CI is set."""
    if os.environ.get("FAULT_ITERATIONS"):
        return int(os.environ["FAULT_ITERATIONS"])
    return ci if os.environ.get("CI", "").lower() in ("1", "true") else full
