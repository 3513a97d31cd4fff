"""A database that freezes, dies and comes back, under a real `kata-probe` process watched from
outside as kubelet watches it: the time bounds are the manifests' probe timings."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir
from tests.conftest import Database
from tests.faults.probe_process import Answer, ProbeProcess, liveness_bound, readiness_bound
from tests.probe.conftest import ready_database

FIRST_READY = 20.0
# Hundreds of answers, spread over several rounds that each time out against the frozen server.
LIVENESS_REQUESTS = 300
FROZEN_ROUNDS = 3


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """Not the session server: these tests stop and kill it."""
    with running_server(wheel_bin_dir(16)) as server:
        server.psql("CREATE EXTENSION vector")
        yield server


@pytest.fixture
def probe(own_server: PostgresServer, migrations_dir: Path, tmp_path: Path) -> Iterator[ProbeProcess]:
    """A probe whose migrations are applied: every check passes. (An image that expects no
    migrations is refused at start: it could not tell a current schema from a missing one.)"""
    ready_database(Database(own_server, "postgres"), migrations_dir)
    process = ProbeProcess(own_server.url(), tmp_path / "probe.log", {"MIGRATIONS_DIR": str(migrations_dir)})
    process.start().until_ready(200, FIRST_READY)
    yield process
    process.stop()


def livez_over_rounds(probe: ProbeProcess) -> list[Answer]:
    """/livez asked back to back until both LIVENESS_REQUESTS answers and FROZEN_ROUNDS more
    failed rounds (the probe's own count) have passed."""
    target = probe.failed_rounds() + FROZEN_ROUNDS
    answers: list[Answer] = []

    def enough() -> bool:
        answers.append(probe.get("/livez", timeout=liveness_bound()))
        return len(answers) >= LIVENESS_REQUESTS and probe.failed_rounds() >= target

    probe.until(enough, FROZEN_ROUNDS * readiness_bound() + FIRST_READY, f"{FROZEN_ROUNDS} failed rounds")
    return answers


def test_frozen_database_fails_readiness_within_a_round_while_liveness_answers_every_request(
    own_server: PostgresServer, probe: ProbeProcess
) -> None:
    with own_server.frozen():
        probe.until_ready(503, readiness_bound())
        answers = livez_over_rounds(probe)
        body = probe.health()
    slowest = max(answer.seconds for answer in answers)
    assert {answer.status for answer in answers} == {200}, [a.status for a in answers if a.status != 200]
    assert slowest < liveness_bound(), f"slowest /livez {slowest * 1000:.0f} ms"
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["error"] == "timeout"  # type: ignore[index]
    probe.until_ready(200, readiness_bound())
    assert probe.unhandled() == []


def test_killed_database_fails_readiness_and_recovers_after_restart(
    own_server: PostgresServer, probe: ProbeProcess
) -> None:
    for pid in own_server.processes():  # the whole server, as when its container is OOM-killed
        os.kill(pid, signal.SIGKILL)
    probe.until_ready(503, readiness_bound())
    answer = probe.get("/livez", timeout=liveness_bound())
    assert answer.status == 200
    assert answer.json()["checks"]["database"]["error"] in ("connection refused", "connection lost")  # type: ignore[index]
    # The killed processes stay zombies here (this container's PID 1 does not reap orphans), so
    # their lock files look owned; a restarted container would not have them. Then crash recovery.
    (own_server.data_dir / "postmaster.pid").unlink()
    (own_server.socket_dir / f".s.PGSQL.{own_server.port}.lock").unlink(missing_ok=True)
    own_server.resume()
    probe.until_ready(200, readiness_bound())
