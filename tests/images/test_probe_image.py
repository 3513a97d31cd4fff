"""The probe image run as the sidecar in deploy/k8s runs it (command, environment, user 10001,
read-only root, no capabilities), watched the way kubelet watches it: its probes' timings read
from the built manifests. Bounds come from those timings and the sidecar's PROBE_* settings,
with a wide margin for a busy machine; bench/kubelet_sim.py prints the measured times."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpg.throwaway import SUPERUSER_PASSWORD, PostgresServer, running_server, wheel_bin_dir
from tests.conftest import Database
from tests.images.containers import diff, job, pod_spec
from tests.images.kubelet import Poll, Prober, ProbeSpec
from tests.images.probe_container import SIDECAR, ProbeContainer, setting, wedge_dir
from tests.polling import wait_until

pytestmark = pytest.mark.usefixtures("images")
INTERVAL = setting("PROBE_INTERVAL")
TIMEOUT = setting("PROBE_TIMEOUT")
SHUTDOWN_DELAY = setting("PROBE_SHUTDOWN_DELAY")
STALENESS = 3 * INTERVAL  # a round older than this counts as failing (README)
GRACE = float(pod_spec("Deployment", "kata-context")["terminationGracePeriodSeconds"])
LIVENESS = ProbeSpec.of(SIDECAR, "livenessProbe")
READINESS = ProbeSpec.of(SIDECAR, "readinessProbe")
# Allowance on top of each contract bound: podman, a 2-core machine shared with other work.
MARGIN = 10.0
OUTAGE = 60.0


def migrate(url: str) -> None:
    name = f"kata-test-job-{uuid.uuid4().hex[:12]}"
    try:
        result = subprocess.run(job(url).podman_run(name), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def migrated(database: Database) -> Database:
    migrate(database.url)
    return database


@pytest.fixture
def probes() -> Iterator[list[ProbeContainer]]:
    started: list[ProbeContainer] = []
    yield started
    for probe in started:
        probe.remove()


@pytest.fixture(scope="module")
def outage_server() -> Iterator[PostgresServer]:
    """A server of this module's own: the outage test freezes it."""
    with running_server(wheel_bin_dir(16)) as server:
        yield server


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every backend and helper it forked."""
    postmaster = server.postmaster_pid()
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(server: PostgresServer) -> Iterator[None]:
    """A hung database: every server process stopped (connections open, nothing answers)."""
    os.kill(server.postmaster_pid(), signal.SIGSTOP)  # first, so it forks nothing new
    pids = server_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_the_sidecar_turns_ready_and_serves_its_metrics(migrated: Database, probes: list[ProbeContainer]) -> None:
    probe = ProbeContainer(migrated.url).start()
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    assert probe.status("/livez") == 200
    metrics = probe.get_text("/metrics")
    assert "kata_db_up 1.0" in metrics
    assert 'kata_db_build_info{version="' in metrics
    assert SUPERUSER_PASSWORD not in metrics


def test_on_sigterm_readyz_turns_503_it_drains_then_exits_0_within_the_grace_period(
    migrated: Database, probes: list[ProbeContainer]
) -> None:
    probe = ProbeContainer(migrated.url).start()
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    answers: list[Poll] = []
    # kubelet's stop: SIGTERM, then SIGKILL after terminationGracePeriodSeconds.
    stop = subprocess.Popen(
        ["podman", "--runtime", "runc", "stop", "--time", str(int(GRACE)), probe.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    signalled = time.monotonic()
    while stop.poll() is None:
        status = probe.status("/readyz", timeout=1)
        if status:
            answers.append(Poll(time.monotonic(), status))
        time.sleep(0.1)  # the polling rate of this observer, not a wait for anything
    stopped = time.monotonic()
    assert probe.exit_code() == 0, probe.logs()[-3000:]  # 137 would mean SIGKILL at the deadline
    assert stopped - signalled < GRACE
    assert answers and all(a.status == 503 for a in answers[1:]), [a.status for a in answers]
    # It kept answering through the drain: the last answer came near its end.
    assert answers[-1].at - signalled >= SHUTDOWN_DELAY - 1.5


def test_the_sidecar_writes_nothing_to_the_image_filesystem(
    migrated: Database, probes: list[ProbeContainer]
) -> None:
    """A writable root this once, so a write shows in `podman diff` instead of failing."""
    probe = ProbeContainer(migrated.url).start(writable=True)
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    for path in ("/livez", "/healthz", "/readyz?verbose", "/readyz/schema", "/metrics", "/openapi.yaml"):
        probe.status(path)
    subprocess.run(["podman", "--runtime", "runc", "stop", "--time", str(int(GRACE)), probe.name], check=True,
                   capture_output=True)
    assert diff(probe.name) == []


def test_kubelet_takes_the_pod_out_during_a_60_s_database_outage_and_never_restarts_it(
    outage_server: PostgresServer, probes: list[ProbeContainer]
) -> None:
    name = outage_server.create_database()
    url = outage_server.url(name)
    migrate(url)
    probe = ProbeContainer(url).start()
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    with Prober(LIVENESS, probe.port, True) as liveness, Prober(READINESS, probe.port, False) as readiness:
        wait_until(lambda: readiness.first(True, 0) is not None, 3 * READINESS.period, "kubelet: ready")
        with frozen(outage_server):
            began = time.monotonic()
            threading.Event().wait(OUTAGE)  # the outage itself lasts this long: the scenario, not a wait
        ended = time.monotonic()
        wait_until(lambda: readiness.first(True, ended) is not None, 60, "kubelet: ready again", interval=0.2)
    unready = readiness.first(False, began)
    assert unready is not None, [(p.at - began, p.status) for p in readiness.polls]
    # Noticed within one round to start, its timeout, and failureThreshold periods.
    assert unready - began <= INTERVAL + TIMEOUT + READINESS.failure_threshold * READINESS.period + MARGIN
    recovered = readiness.first(True, ended)
    assert recovered is not None
    assert recovered - ended <= INTERVAL + TIMEOUT + READINESS.success_threshold * READINESS.period + MARGIN
    assert liveness.failures() == []
    assert len(liveness.polls) >= OUTAGE / LIVENESS.period - 1


def test_kubelet_restarts_a_sidecar_whose_monitor_is_stuck_within_the_stated_bound(
    migrated: Database, probes: list[ProbeContainer]
) -> None:
    switch = wedge_dir(Path(tempfile.mkdtemp(prefix="kata-wedge-")))
    probe = ProbeContainer(
        migrated.url, options=("--volume", f"{switch}:/kata-wedge:ro"), extra_env={"PYTHONPATH": "/kata-wedge"}
    ).start()
    probes.append(probe)
    try:
        probe.until_status("/readyz", 200, 60)
        with Prober(LIVENESS, probe.port, True) as liveness:
            (switch / "wedged").touch(mode=0o644)
            wedged = time.monotonic()
            bound = INTERVAL + STALENESS + TIMEOUT + LIVENESS.failure_threshold * LIVENESS.period
            wait_until(lambda: liveness.first(False, wedged) is not None, bound + MARGIN, "kubelet: restart")
        restart = liveness.first(False, wedged)
        assert restart is not None
        # Never before the staleness bound has passed: one slow round does not restart anything.
        assert restart - wedged >= STALENESS
        assert probe.running()  # the process lives on: only the monitor is stuck
    finally:
        (switch / "wedged").unlink(missing_ok=True)
