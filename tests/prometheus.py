"""A real Prometheus on loopback scraping one target every second, queried through its HTTP API."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpg.processes import stop_process
from localpg.throwaway import free_port
from tests.polling import wait_until

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")


@dataclass
class Prometheus:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (empty until the first scrape lands)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=5) as response:
            targets: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
            return targets

    def logs(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def ready() -> bool:
        url = f"http://127.0.0.1:{port}/-/ready"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            return bool(response.status == 200)
        return False

    wait_until(ready, timeout, f"prometheus to be ready on {port}", process=process)


@contextlib.contextmanager
def running_prometheus(target: str) -> Iterator[Prometheus]:
    """Scrape `target` (host:port, path /metrics) every second."""
    directory = Path(tempfile.mkdtemp(prefix="kata-prometheus-"))
    port = free_port()
    (directory / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: kata-probe\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        wait_ready(port, process)
        yield Prometheus(port, directory, process)
    finally:
        stop_process(process, 15)
        shutil.rmtree(directory, ignore_errors=True)
