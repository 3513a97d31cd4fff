"""The probe image run as the sidecar in deploy/k8s runs it (command, environment, user 10001,
read-only root, no capabilities), watched the way kubelet watches it: its probes' timings read
from the built manifests. Bounds come from those timings and the sidecar's PROBE_* settings,
with a wide margin for a busy machine; bench/kubelet_sim.py prints the measured times."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from localk8s.containers import PODMAN, diff
from localk8s.database import PASSWORDS, DeployedDatabase, Secrets
from localk8s.kubelet import Poll
from localk8s.manifests import pod_spec, sidecar, workload
from localk8s.probe_container import ProbeContainer
from localk8s.scenarios import database_outage, migrate, stuck_monitor
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir

pytestmark = pytest.mark.usefixtures("images")
# Allowance on top of each contract bound: podman, a 2-core machine shared with other work.
MARGIN = 10.0
OUTAGE = 60.0


@pytest.fixture
def migrated_secrets(deployed: DeployedDatabase) -> Secrets:
    """The Secrets of a database the Job has migrated."""
    migrate(deployed.secrets())
    return deployed.secrets()


def grace_period() -> float:
    """The pod's terminationGracePeriodSeconds: kubelet's SIGKILL after SIGTERM."""
    return float(pod_spec(workload("Deployment", "kata-context"))["terminationGracePeriodSeconds"])


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


def test_the_sidecar_turns_ready_and_serves_its_metrics(
    migrated_secrets: Secrets, probes: list[ProbeContainer]
) -> None:
    probe = ProbeContainer(migrated_secrets).start()
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    assert probe.status("/livez") == 200
    metrics = probe.get_text("/metrics")
    assert "kata_db_up 1.0" in metrics
    assert 'kata_db_build_info{version="' in metrics
    assert not [pw for pw in PASSWORDS.values() if pw in metrics]


def test_on_sigterm_readyz_turns_503_it_drains_then_exits_0_within_the_grace_period(
    migrated_secrets: Secrets, probes: list[ProbeContainer]
) -> None:
    grace = grace_period()
    contract = sidecar()
    probe = ProbeContainer(migrated_secrets).start()
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    answers: list[Poll] = []
    # kubelet's stop: SIGTERM, then SIGKILL once terminationGracePeriodSeconds have passed.
    subprocess.run([*PODMAN, "kill", "--signal", "TERM", probe.name], check=True, capture_output=True)
    signalled = time.monotonic()
    waiter = subprocess.Popen([*PODMAN, "wait", probe.name], stdout=subprocess.PIPE, text=True)
    while waiter.poll() is None and time.monotonic() - signalled < grace:
        status = probe.status("/readyz", timeout=1)
        if status:
            answers.append(Poll(time.monotonic(), status))
        time.sleep(0.1)  # the polling rate of this observer, not a wait for anything
    exited = waiter.poll() is not None
    if not exited:
        subprocess.run([*PODMAN, "kill", probe.name], capture_output=True, check=False)
    waiter.wait(30)
    assert exited, f"still running {grace} s after SIGTERM: kubelet would SIGKILL it"
    assert probe.exit_code() == 0, probe.logs()[-3000:]
    # The signal handler runs on the event loop: allow an answer in flight as the signal landed.
    settled = [a.status for a in answers if a.at - signalled > 0.5]
    assert settled and set(settled) == {503}, [(round(a.at - signalled, 1), a.status) for a in answers]
    # It kept answering through the drain: the last answer came near its end.
    assert answers[-1].at - signalled >= contract.shutdown_delay - 1.5


def test_the_sidecar_writes_nothing_to_the_image_filesystem(
    migrated_secrets: Secrets, probes: list[ProbeContainer]
) -> None:
    """A writable root this once, so a write shows in `podman diff` instead of failing."""
    probe = ProbeContainer(migrated_secrets).start(writable=True)
    probes.append(probe)
    probe.until_status("/readyz", 200, 60)
    for path in ("/livez", "/healthz", "/readyz?verbose", "/readyz/schema", "/metrics", "/openapi.yaml"):
        probe.status(path)
    subprocess.run(
        [*PODMAN, "stop", "--time", str(int(grace_period())), probe.name], check=True, capture_output=True
    )
    assert diff(probe.name) == []


def test_kubelet_takes_the_pod_out_during_a_60_s_database_outage_and_never_restarts_it(
    outage_server: PostgresServer,
) -> None:
    contract = sidecar()
    outage = database_outage(outage_server, OUTAGE)
    assert outage.unready_after <= contract.unready_within + MARGIN
    assert outage.ready_again_after <= contract.ready_again_within + MARGIN
    assert outage.liveness_failures == 0
    assert outage.liveness_polls >= OUTAGE / contract.liveness.period


def test_kubelet_restarts_a_sidecar_whose_monitor_is_stuck_within_the_stated_bound(
    migrated_secrets: Secrets,
) -> None:
    contract = sidecar()
    stuck = stuck_monitor(migrated_secrets, contract.restart_within + MARGIN)
    assert stuck.restart_after <= contract.restart_within + MARGIN
    # Never before that bound less one interval: a slow round (cut at its timeout) restarts nothing.
    assert stuck.livez_failing_after >= contract.livez_fails_within - contract.interval - 1
    assert stuck.process_running  # the process lives on: only the monitor is stuck
