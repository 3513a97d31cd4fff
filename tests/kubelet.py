"""What kubelet holds the probe sidecar to, read from the manifests `kubectl kustomize deploy/k8s`
builds: the only source of the time bounds the probe tests assert."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import yaml

from tests.deploy_tools import ROOT, run_tool

PROBE_CONTAINER = "db-probe"


@dataclass(frozen=True)
class HttpProbe:
    """One kubelet probe: an answer slower than `timeout` seconds counts as a failure."""

    path: str
    period: float
    timeout: float


@dataclass(frozen=True)
class ProbeContract:
    liveness: HttpProbe
    readiness: HttpProbe
    env: dict[str, str]  # the probe container's literal settings (PROBE_INTERVAL, ...)


def http_probe(spec: dict[str, Any]) -> HttpProbe:
    # Kubernetes defaults: periodSeconds 10, timeoutSeconds 1.
    return HttpProbe(
        spec["httpGet"]["path"], float(spec.get("periodSeconds", 10)), float(spec.get("timeoutSeconds", 1))
    )


@functools.cache
def probe_contract() -> ProbeContract:
    """The liveness and readiness probes of the probe container in the built Deployment."""
    result = run_tool("kubectl", "kustomize", str(ROOT / "deploy" / "k8s"))
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    for document in yaml.safe_load_all(result.stdout):
        if document and document["kind"] == "Deployment":
            spec = document["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                if container["name"] == PROBE_CONTAINER:
                    return ProbeContract(
                        http_probe(container["livenessProbe"]),
                        http_probe(container["readinessProbe"]),
                        {e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
                    )
    raise AssertionError(f"no container {PROBE_CONTAINER!r} in the Deployment of deploy/k8s")
