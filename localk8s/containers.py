"""The built images run as deploy/k8s runs them: podman with runc, the manifests' command, args,
environment and security context (user, read-only root, no capabilities, no privilege gain)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localk8s.manifests import ROOT, container_spec

# crun fails on this kind of machine ("cgroups in hybrid mode not supported"); runc works.
PODMAN = ("podman", "--runtime", "runc")
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MIGRATOR_IMAGE = f"kata-context/db-migrator:{VERSION}"
PROBE_IMAGE = f"kata-context/db-probe:{VERSION}"
# What the container engine itself creates in every container (the /etc/mtab link a minimal base
# lacks, podman's marker file): not a write by the image's program.
ENGINE_PATHS = frozenset({"/etc", "/etc/mtab", "/run", "/run/.containerenv"})


def podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check)


def unavailable_reason() -> str | None:
    """Why the images cannot be built and run here, or None when they can."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc not found: install them with `sudo apt-get install -y podman runc mmdebstrap`"
    if os.geteuid() != 0:
        return "the image tests run podman as root (rootless podman is not set up here): run them as root"
    return None


def ulimits() -> list[str]:
    """Limits podman may set: root here lacks CAP_SYS_RESOURCE to raise them past the hard limit."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--ulimit", f"nofile={hard}:{hard}", "--ulimit", "nproc=32768:32768"]


@dataclass(frozen=True)
class ManifestContainer:
    """One container of the built manifests, runnable with podman on the host network."""

    spec: Mapping[str, Any]
    secrets: Mapping[str, Mapping[str, str]]  # Secret name -> key -> value
    pod_name: str = "kata-test-pod"
    overrides: Mapping[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()  # more podman options (a test's own volume)

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in self.spec.get("env", []):
            source = entry.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self.secrets.get(ref["name"], {}).get(ref["key"])
                if value is not None:
                    env[entry["name"]] = value
                elif not ref.get("optional", False):
                    raise AssertionError(f"the test gives no Secret {ref['name']} key {ref['key']}")
            elif "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                env[entry["name"]] = self.pod_name
            else:
                env[entry["name"]] = entry["value"]
        return {**env, **self.overrides}

    def security_options(self, *, writable: bool = False) -> list[str]:
        context = self.spec["securityContext"]
        options = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
        if context.get("readOnlyRootFilesystem") and not writable:
            # Kubernetes mounts no tmpfs anywhere; podman would, unless told not to.
            options += ["--read-only", "--read-only-tmpfs=false"]
        if context.get("capabilities", {}).get("drop") == ["ALL"]:
            options += ["--cap-drop", "ALL"]
        if context.get("allowPrivilegeEscalation") is False:
            options += ["--security-opt", "no-new-privileges"]
        return options

    def podman_run(self, name: str, *, detach: bool = False, writable: bool = False) -> list[str]:
        """`podman run` for this container; `writable` drops only the read-only root (for diff)."""
        command: Sequence[str] = self.spec["command"]
        env = [arg for key, value in self.environment().items() for arg in ("--env", f"{key}={value}")]
        return [
            *PODMAN,
            "run",
            *(["--detach"] if detach else []),
            "--name",
            name,
            "--network",
            "host",
            "--passwd=false",  # podman would add the numeric user to /etc/passwd: a write of its own
            *ulimits(),
            *self.security_options(writable=writable),
            *env,
            *self.options,
            "--entrypoint",
            command[0],
            self.spec["image"],
            *command[1:],
            *self.spec.get("args", []),
        ]


def job(secrets: Mapping[str, Mapping[str, str]]) -> ManifestContainer:
    """The migration Job's container with these Secrets."""
    return ManifestContainer(container_spec("Job", "kata-db-migrate", "migrate"), secrets)


def diff(name: str) -> list[str]:
    """What the container changed in its filesystem, less what the engine itself creates."""
    lines = podman("diff", name, check=True).stdout.splitlines()
    return [line for line in lines if line.split(maxsplit=1)[-1] not in ENGINE_PATHS]


def remove(name: str) -> None:
    podman("rm", "--force", "--time", "0", name)
