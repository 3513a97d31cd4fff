"""The probe as a real process for fault tests: what it answers, how fast, its memory and log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localk8s.manifests import sidecar
from localpg.processes import stop_process
from localpg.throwaway import free_port
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 0.5
TIMEOUT = 0.3
FAILED_ROUNDS = re.compile(r'^kata_db_checks_total\{check="database",result="failed"\}\s+([\d.e+]+)', re.M)


def liveness_bound() -> float:
    """Seconds within which kubelet needs a /livez answer: the manifests' timeoutSeconds. The
    probe answers in milliseconds, so the bound holds on a loaded machine with a wide margin."""
    return sidecar().liveness.timeout


def readiness_bound() -> float:
    """Seconds within which kubelet sees /readyz follow the database: one round of the probe
    (interval + timeout), then one readiness periodSeconds of the manifests until kubelet asks."""
    return INTERVAL + TIMEOUT + sidecar().readiness.period


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> dict[str, object]:
        document: dict[str, object] = json.loads(self.body)
        return document


@dataclass
class LivenessWatch:
    """Polls /livez from a thread until stopped; every status and the slowest answer."""

    probe: ProbeProcess
    statuses: list[int] = field(default_factory=list)
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LivenessWatch:
        def poll() -> None:
            while not self._stop.is_set():
                answer = self.probe.get("/livez", timeout=liveness_bound())
                self.statuses.append(answer.status)
                self.slowest = max(self.slowest, answer.seconds)
                self._stop.wait(0.01)

        self._thread = threading.Thread(target=poll, name="livez-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class ProbeProcess:
    """`python -m probe` on a free loopback port with fast rounds; stdout+stderr in `log_path`."""

    url: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProbeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROBE_"))}
        env.update(
            DATABASE_URL=self.url,
            PROBE_HOST="127.0.0.1",
            PROBE_PORT=str(self.port),
            PROBE_INTERVAL=str(INTERVAL),
            PROBE_TIMEOUT=str(TIMEOUT),
            PROBE_SHUTDOWN_DELAY="0",
            **self.extra_env,
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "probe"], env=env, stdout=log, stderr=log, cwd=REPO
            )
        return self

    def get(self, path: str, timeout: float = 2.0) -> Answer:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return Answer(response.status, response.read(), time.perf_counter() - started)
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read(), time.perf_counter() - started)
        except OSError:
            return Answer(0, b"", time.perf_counter() - started)

    def failed_rounds(self) -> int:
        """Rounds whose database check failed, from the probe's own counter in /metrics."""
        text = self.get("/metrics").body.decode()
        match = re.search(
            r'^kata_db_checks_total\{check="database",result="failed"\}\s+([\d.e+]+)', text, re.M
        )
        return int(float(match[1])) if match else 0

    def health(self) -> dict[str, object]:
        return self.get("/healthz").json()

    def database_error(self) -> str:
        """The classified error /healthz reports for the database; "" while not listening yet."""
        answer = self.get("/healthz")
        if answer.status == 0:
            return ""
        checks = answer.json().get("checks", {})
        assert isinstance(checks, dict)
        return str(checks.get("database", {}).get("error", ""))

    def until(self, condition: Callable[[], bool], deadline: float, what: str) -> float:
        """Poll `condition` every 10 ms; seconds it took; AssertionError with the probe's log
        after `deadline`, or when the probe exits."""
        try:
            return wait_until(condition, deadline, what, process=self.process, interval=0.01)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()[-3000:]}") from None

    def until_ready(self, status: int, deadline: float) -> float:
        return self.until(lambda: self.get("/readyz").status == status, deadline, f"/readyz {status}")

    def rss(self) -> int:
        """Resident set size in bytes, from /proc (Linux)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def unhandled(self) -> list[str]:
        """Log lines that show an exception escaped: tracebacks, exception fields, asyncio errors."""
        bad = []
        for line in self.logs().splitlines():
            lowered = line.lower()
            if (
                "traceback" in lowered
                or '"exception"' in lowered
                or '"level": "critical"' in lowered
                or '"logger": "asyncio"' in lowered
                or ('"logger": "aiohttp' in lowered and '"error"' in lowered)
            ):
                bad.append(line)
        return bad

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10)
