"""The probe image run as the sidecar in deploy/k8s runs it, detached, on a free host port."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from localk8s.containers import ManifestContainer, podman, remove
from localk8s.database import Secrets
from localk8s.kubelet import http_get
from localk8s.manifests import sidecar
from localpg.throwaway import free_port


@dataclass
class ProbeContainer:
    """The sidecar with these Secrets; PROBE_PORT alone differs (the host network is shared)."""

    secrets: Secrets
    options: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    name: str = field(default_factory=lambda: f"kata-test-probe-{uuid.uuid4().hex[:12]}")

    def container(self) -> ManifestContainer:
        overrides = {"PROBE_PORT": str(self.port), **self.extra_env}
        return ManifestContainer(sidecar().spec, self.secrets, overrides=overrides, options=self.options)

    def start(self, *, writable: bool = False) -> ProbeContainer:
        subprocess.run(
            self.container().podman_run(self.name, detach=True, writable=writable),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return self

    def status(self, path: str, timeout: float = 2.0) -> int:
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout)

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return str(response.read().decode())

    def until_status(self, path: str, status: int, timeout: float) -> None:
        """Return once `path` answers `status`; AssertionError with the container's log after
        `timeout` seconds or when the container has exited."""
        deadline = time.monotonic() + timeout
        while self.status(path) != status:
            if time.monotonic() > deadline or not self.running():
                raise AssertionError(f"{path} never answered {status} in {timeout} s:\n{self.logs()[-3000:]}")
            time.sleep(0.1)

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name)
        return state.stdout.strip() == "true"

    def exit_code(self) -> int:
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name, check=True).stdout)

    def logs(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        remove(self.name)


def wedge_dir(root: Path) -> Path:
    """A directory uid 10001 can read, holding sitecustomize.py (the stuck-monitor switch)."""
    root.mkdir(mode=0o755, exist_ok=True)
    root.chmod(0o755)
    source = Path(__file__).with_name("wedge") / "sitecustomize.py"
    (root / "sitecustomize.py").write_text(source.read_text())
    (root / "sitecustomize.py").chmod(0o644)
    return root
