"""Benchmark 6: what kubelet sees of the probe sidecar image, with the probe timings of the
built manifests: a database outage (BENCH_OUTAGE seconds, default 60; every server process
SIGSTOPped) and a monitor stuck on purpose, beside what deploy/k8s/deployment.yaml promises.

Needs the images (`make images`) and podman as root, like tests/images/."""

from __future__ import annotations

import os
import sys

from bench import report
from localk8s.database import deploy_database
from localk8s.manifests import sidecar
from localk8s.scenarios import database_outage, migrate, stuck_monitor
from localpg.throwaway import running_server, wheel_bin_dir

OBSERVER = 0.5  # the resolution of a measurement taken from outside the container


def run() -> str:
    contract = sidecar()
    seconds = float(os.environ.get("BENCH_OUTAGE", "60"))
    noticed, back = contract.unready_within, contract.ready_again_within
    livez_bound, restart = contract.livez_fails_within, contract.restart_within
    livez_earliest = livez_bound - contract.interval
    with running_server(wheel_bin_dir()) as pg:
        print(f"bench: kubelet_sim {seconds:.0f} s database outage", file=sys.stderr)
        outage = database_outage(pg, seconds)
        secrets = deploy_database(pg).secrets()
        migrate(secrets)
        print("bench: kubelet_sim stuck monitor", file=sys.stderr)
        stuck = stuck_monitor(secrets, restart + 30)
    rows = [
        [
            "outage -> kubelet takes the pod out (s)",
            f"{outage.unready_after:.1f}",
            f"<= {noticed:.0f}: interval + timeout + failureThreshold x period",
            report.verdict(outage.unready_after <= noticed),
        ],
        [
            "database back -> kubelet ready again (s)",
            f"{outage.ready_again_after:.1f}",
            f"<= {back:.0f}: interval + timeout + successThreshold x period",
            report.verdict(outage.ready_again_after <= back),
        ],
        [
            f"liveness failures during the {seconds:.0f} s outage",
            f"{outage.liveness_failures} of {outage.liveness_polls} polls",
            "0: an outage never restarts the sidecar",
            report.verdict(outage.liveness_failures == 0),
        ],
        [
            "monitor stuck -> /livez 503 (s)",
            f"{stuck.livez_failing_after:.1f}",
            f"{livez_earliest:.0f}..{livez_bound:.0f}: staleness + timeout - interval .. staleness + timeout",
            # Seen from outside: our polls every 0.1 s, and the wedge lands a moment after `touch`.
            report.verdict(livez_earliest - OBSERVER <= stuck.livez_failing_after <= livez_bound + OBSERVER),
        ],
        [
            "monitor stuck -> kubelet restarts the sidecar (s)",
            f"{stuck.restart_after:.1f}",
            f"<= {restart:.0f}: + failureThreshold x period",
            report.verdict(stuck.restart_after <= restart),
        ],
    ]
    return report.table(
        "kubelet's view of the probe sidecar image (probe timings from kubectl kustomize deploy/k8s)",
        ["figure", "measured", "promised (deployment.yaml comments)", "verdict"],
        rows,
    )
