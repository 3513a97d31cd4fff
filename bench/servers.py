"""Start, wait for and stop the HTTP servers the probe benchmarks measure, and drive load at them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from localpg.processes import stop_process
from localpg.throwaway import free_port

REPO = Path(__file__).resolve().parent.parent


def source() -> Path:
    """The checkout whose probe and migrator run: this one, or BENCH_SOURCE for a before/after."""
    return Path(os.environ.get("BENCH_SOURCE", REPO))


def source_env() -> dict[str, str]:
    """The environment for a measured process: byte-code caching on, as in an installed image."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if "BENCH_SOURCE" in os.environ:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ["BENCH_SOURCE"], env.get("PYTHONPATH")]))
    return env


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc (Linux), without a psutil dependency."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Server:
    """A server process on 127.0.0.1:port; `started_at` is when the process was spawned."""

    process: subprocess.Popen[bytes]
    port: int
    started_at: float
    log: Path

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_mib(self) -> float:
        return rss_bytes(self.process.pid) / 2**20

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as response:  # noqa: S310 - http only
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def json(self, path: str) -> dict[str, object]:
        _status, body = self.get(path)
        document: dict[str, object] = json.loads(body)
        return document

    def wait_for(self, path: str, status: int = 200, deadline: float = 30.0) -> float:
        """Poll until `path` answers `status`; seconds since the process was spawned."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if self.get(path, timeout=1.0)[0] == status:
                    return time.monotonic() - self.started_at
            time.sleep(0.005)
        raise TimeoutError(f"{self.url(path)} did not answer {status} within {deadline} s")

    def stop(self) -> None:
        stop_process(self.process, 15)


def spawn(argv: list[str], port: int, env: Mapping[str, str], name: str) -> Server:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"kata-bench-{name}-{port}.log"
    handle = log.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env={**source_env(), **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=source()
    )
    return Server(process, port, started, log)


@contextlib.contextmanager
def probe(url: str, **settings: str) -> Iterator[Server]:
    """`python -m probe` on a free port; `settings` are PROBE_* environment variables."""
    port = free_port()
    env = {
        "DATABASE_URL": url,
        "PROBE_PORT": str(port),
        "PROBE_HOST": "127.0.0.1",
        "PROBE_SHUTDOWN_DELAY": "0",
        **settings,
    }
    server = spawn([sys.executable, "-m", "probe"], port, env, "probe")
    try:
        server.wait_for("/readyz")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def baseline(url: str | None = None) -> Iterator[Server]:
    """The bare handler, or with `url` the query-per-request health endpoint (bench/bare.py)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare", str(port), *([url] if url else [])]
    server = spawn(argv, port, {}, "bare")
    try:
        server.wait_for("/")
        yield server
    finally:
        server.stop()


def migrate(url: str) -> None:
    """Bring the database to this image's schema with our own migrator."""
    subprocess.run(
        [sys.executable, "-m", "migrator", "up", "--log-format", "text"],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
        cwd=source(),
    )


@dataclass(frozen=True)
class Load:
    """What wrk reported: requests/s, p50 and p99 latency in ms, non-2xx answers, requests."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int = 5, connections: int = 20, threads: int = 2) -> Load:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match[1]) * UNITS[match[2]] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Load(
        float(rps[1]) if rps else 0.0,
        latency("50"),
        latency("99"),
        int(errors[1]) if errors else 0,
        int(total[1]) if total else 0,
    )


def hey(url: str, requests: int, connections: int = 20) -> None:
    subprocess.run(["hey", "-n", str(requests), "-c", str(connections), url], check=True, capture_output=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
