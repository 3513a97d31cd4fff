"""What kubelet sees of the probe sidecar in two faults, measured on the real images: a database
outage of a given length, and a monitor stuck on purpose. The image tests assert the contract
bounds on these figures; bench/kubelet_sim.py prints them beside the manifests' promises."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from localk8s.containers import job, remove
from localk8s.database import Secrets, deploy_database
from localk8s.kubelet import Prober
from localk8s.manifests import sidecar
from localk8s.probe_container import ProbeContainer, wedge_dir
from localpg.throwaway import PostgresServer

# How long the sidecar may take to start and turn ready in these scenarios.
START_TIMEOUT = 60.0


def migrate(secrets: Secrets) -> None:
    """Run the migration Job's container to completion with these Secrets."""
    name = f"kata-test-job-{uuid.uuid4().hex[:12]}"
    try:
        result = subprocess.run(job(secrets).podman_run(name), capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"the Job's container exited {result.returncode}:\n{result.stderr}")
    finally:
        remove(name)


@dataclass(frozen=True)
class Outage:
    """Seconds from the outage's start to kubelet's unready verdict, and from its end to ready
    again; liveness polls sent and failed throughout."""

    unready_after: float
    ready_again_after: float
    liveness_polls: int
    liveness_failures: int


def database_outage(server: PostgresServer, seconds: float) -> Outage:
    """A sidecar on a fresh migrated database of `server` (deploy/roles.sql applied), which
    hangs for `seconds`."""
    secrets = deploy_database(server).secrets()
    migrate(secrets)
    probe = ProbeContainer(secrets).start()
    try:
        probe.until_status("/readyz", 200, START_TIMEOUT)
        with (
            Prober(sidecar().liveness, probe.port, True) as liveness,
            Prober(sidecar().readiness, probe.port, False) as readiness,
        ):
            readiness.wait_for(True, 0, 3 * readiness.spec.period)
            with server.frozen():
                began = time.monotonic()
                threading.Event().wait(seconds)  # the outage lasts this long: the scenario itself
            ended = time.monotonic()
            ready = readiness.wait_for(True, ended, START_TIMEOUT)
        unready = readiness.first(False, began)
        if unready is None or unready > ended:
            raise AssertionError(f"kubelet never saw the {seconds} s outage: {readiness.polls}")
        return Outage(unready - began, ready - ended, len(liveness.polls), len(liveness.failures()))
    finally:
        probe.remove()


@dataclass(frozen=True)
class Stuck:
    """Seconds from wedging the monitor to /livez answering 503, and to kubelet's restart
    verdict; whether the process itself still ran (only its monitor was stuck)."""

    livez_failing_after: float
    restart_after: float
    process_running: bool


def stuck_monitor(secrets: Secrets, restart_timeout: float) -> Stuck:
    """A sidecar on a migrated database whose calls hang and ignore their timeouts on demand."""
    switch = wedge_dir(Path(tempfile.mkdtemp(prefix="kata-wedge-")))
    probe = ProbeContainer(
        secrets, options=("--volume", f"{switch}:/kata-wedge:ro"), extra_env={"PYTHONPATH": "/kata-wedge"}
    ).start()
    try:
        probe.until_status("/readyz", 200, START_TIMEOUT)
        with Prober(sidecar().liveness, probe.port, True) as liveness:
            (switch / "wedged").touch(mode=0o644)
            wedged = time.monotonic()
            probe.until_status("/livez", 503, restart_timeout)
            failing = time.monotonic()
            restart = liveness.wait_for(False, wedged, restart_timeout)
        return Stuck(failing - wedged, restart - wedged, probe.running())
    finally:
        (switch / "wedged").unlink(missing_ok=True)
        probe.remove()
        shutil.rmtree(switch, ignore_errors=True)
