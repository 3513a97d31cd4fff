"""The objects `kubectl kustomize` builds from deploy/k8s (or an overlay of it), and what the
tooling and the tests read from them: pod templates, containers, the probe sidecar's contract.
Built on first use, never at import: collecting the tests must not need kubectl."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from localk8s.kubelet import ProbeSpec
from probe.settings import staleness, stuck_after

ROOT: Final = Path(__file__).resolve().parents[1]
K8S: Final = ROOT / "deploy" / "k8s"
KUSTOMIZE_TIMEOUT_S: Final = 120

Manifest = dict[str, Any]


def build(directory: Path = K8S, kubectl: str = "kubectl") -> list[Manifest]:
    """Every object `kubectl kustomize directory` renders; AssertionError with kubectl's message
    when the build fails."""
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise AssertionError(f"{kubectl} not found: install it (apt-get install kubectl)") from None
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def built_manifests() -> tuple[Manifest, ...]:
    """Every object deploy/k8s builds, built once per process."""
    return tuple(build())


def workload(kind: str, name: str) -> Manifest:
    """The object labelled app.kubernetes.io/name=`name` (the Job's own name also carries its
    release: kata-db-migrate-<tag>)."""
    for obj in built_manifests():
        if obj["kind"] == kind and obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == name:
            return obj
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def pod_spec(obj: Mapping[str, Any]) -> Manifest:
    spec: Manifest = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Mapping[str, Any]) -> list[Manifest]:
    """The pod template's init containers (native sidecars among them), then its containers."""
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(obj: Mapping[str, Any], name: str) -> Manifest:
    matches = [c for c in containers(obj) if c["name"] == name]
    assert len(matches) == 1, f"no single container {name!r} in {obj['metadata']['name']}"
    return matches[0]


def container_spec(kind: str, name: str, container_name: str) -> Manifest:
    """One container of a workload of deploy/k8s."""
    return container(workload(kind, name), container_name)


def literal_env(spec: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment variables that have a literal value (not from a Secret)."""
    return {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}


@dataclass(frozen=True)
class Sidecar:
    """The probe sidecar as deploy/k8s declares it: its PROBE_* settings and kubelet's probes."""

    spec: Mapping[str, Any]

    def setting(self, name: str) -> str:
        return literal_env(self.spec)[name]

    @property
    def interval(self) -> float:
        return float(self.setting("PROBE_INTERVAL"))

    @property
    def timeout(self) -> float:
        return float(self.setting("PROBE_TIMEOUT"))

    @property
    def shutdown_delay(self) -> float:
        return float(self.setting("PROBE_SHUTDOWN_DELAY"))

    @property
    def staleness(self) -> float:
        return staleness(self.interval)

    @property
    def liveness(self) -> ProbeSpec:
        return ProbeSpec.of(self.spec, "livenessProbe")

    @property
    def readiness(self) -> ProbeSpec:
        return ProbeSpec.of(self.spec, "readinessProbe")

    @property
    def startup(self) -> ProbeSpec:
        return ProbeSpec.of(self.spec, "startupProbe")

    # The bounds these timings promise (the image tests assert them, bench/kubelet_sim.py prints
    # them beside what it measures).

    @property
    def unready_within(self) -> float:
        """Seconds from an outage's start to kubelet's unready verdict: one interval to start a
        round, its timeout, then failureThreshold readiness periods."""
        return self.interval + self.timeout + self.readiness.failure_threshold * self.readiness.period

    @property
    def ready_again_within(self) -> float:
        """Seconds from an outage's end to ready again: a round, then successThreshold periods."""
        return self.interval + self.timeout + self.readiness.success_threshold * self.readiness.period

    @property
    def livez_fails_within(self) -> float:
        """Seconds from a monitor getting stuck to /livez failing: no round finished for
        probe.settings.stuck_after (the last one finished up to one interval before)."""
        return stuck_after(self.interval, self.timeout)

    @property
    def restart_within(self) -> float:
        """Seconds from a monitor getting stuck to kubelet's restart: /livez failing, then
        failureThreshold liveness periods."""
        return self.livez_fails_within + self.liveness.failure_threshold * self.liveness.period


@functools.cache
def sidecar() -> Sidecar:
    """The probe sidecar of the kata-context Deployment."""
    return Sidecar(container_spec("Deployment", "kata-context", "db-probe"))
