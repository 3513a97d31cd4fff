"""`make run`: localpg's PostgreSQL 16 with pgvector (unless DATABASE_URL is set), `kata-migrate up`
against it, then `kata-probe` until Ctrl-C, SIGTERM or SIGHUP; one line per step, a failed one says
how to fix it, stops whatever was started and exits 1. A stop signal, at any step and any number
of times, stops what was started and exits 0."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Final

from localpg.cluster import tail
from localpg.local import LOOPBACK, LocalPostgres, SetupFailed, open_local_postgres, require_free_port
from localpg.processes import stop_process
from pgconn.config import SettingsError, parse_port
from pgconn.dsn import InvalidDatabaseUrl, parse_database_url

REPO: Final = Path(__file__).resolve().parent.parent
STEPS: Final = 4
PG_PORT_SETTING: Final = "KATA_LOCAL_PG_PORT"
DEFAULT_PG_PORT: Final = 54329
DEFAULT_PROBE_PORT: Final = 8081
READY_TIMEOUT: Final = 60.0
PROBE_STOP_GRACE: Final = 15.0
# `kata-migrate up` cancels its statement and rolls back on SIGTERM within seconds.
MIGRATOR_STOP_GRACE: Final = 30.0
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
MIGRATE: Final = (sys.executable, "-m", "migrator", "up", "--json")
# Ctrl-C, `kill`/`timeout`/a supervisor, a closed terminal.
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often a wait looks whether a stop signal arrived.
POLL_SECONDS: Final = 0.1


class Reported(Exception):
    """A step failed and `run_step` printed what to do: only exit 1 is left."""


class Stop(BaseException):
    """A stop signal arrived: stop what was started and exit 0."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signal_name = signum.name


class StopSignals:
    """The first SIGINT, SIGTERM or SIGHUP, recorded by the handler and acted on where the code
    looks (`check`), never raised from the handler: an exception from a handler lands wherever
    the program happens to be, such as halfway through starting PostgreSQL, or (a second signal:
    `kill -- -PGID` reaches us, and make passes its own SIGTERM on) in the middle of stopping it,
    leaving the server running and a traceback. Later signals change nothing."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.record)

    def record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def check(self) -> None:
        """Stop when a signal arrived: called between steps and by every wait."""
        if self.received is not None:
            raise Stop(self.received)


def say(line: str) -> None:
    print(line, flush=True)


def port_setting(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return parse_port(name, env.get(name, "").strip() or str(default))
    except SettingsError as exc:
        raise SetupFailed(str(exc), f"set {name} to a free port, e.g. {name}={default} make run") from None


def start_embedded(env: Mapping[str, str], cleanup: contextlib.ExitStack) -> tuple[LocalPostgres, str]:
    notes: list[str] = []
    try:
        server, fresh = open_local_postgres(REPO, port_setting(env, PG_PORT_SETTING, DEFAULT_PG_PORT), notes)
    finally:
        for note in notes:
            say(f"      note: {note}")
    cleanup.callback(stop_database, server)
    server.start()
    data = f"{'new' if fresh else 'existing'} data in {server.data}"
    return server, f"started PostgreSQL {server.cluster.version()} on {LOOPBACK}:{server.port}, {data}"


def stop_database(server: LocalPostgres) -> None:
    summary = server.shut_down()
    if summary:
        say(summary)


def migrate(env: Mapping[str, str], signals: StopSignals) -> str:
    """`kata-migrate up`, the same program and settings as the Kubernetes Job; its log goes to
    stderr, and the summary comes from the result it prints on stdout (`up --json`). In its own
    process group, like the probe: a stop signal reaches it from us, once, as SIGTERM."""
    child = {"MIGRATOR_LOG_FORMAT": "text" if sys.stdout.isatty() else "json", **env}
    with subprocess.Popen(
        MIGRATE,
        env=child,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
        preexec_fn=die_with_parent,
    ) as migrator:
        stdout = until_exit(migrator, signals)
    signals.check()
    if migrator.returncode != 0:
        raise SetupFailed(
            f"`kata-migrate up` exited with code {migrator.returncode}",
            "the migrator's last line above says what happened and what to do",
        )
    outcome = json.loads(stdout.strip().splitlines()[-1])
    if not outcome["applied"]:
        return f"nothing to migrate, schema at version {outcome['version']}"
    return f"applied {len(outcome['applied'])} migration(s), schema at version {outcome['version']}"


def until_exit(child: subprocess.Popen[str], signals: StopSignals) -> str:
    """Its stdout once it exits; after a stop signal it gets SIGTERM, then MIGRATOR_STOP_GRACE
    seconds to roll back and release its lock before SIGKILL."""
    deadline: float | None = None
    while True:
        try:
            stdout, _ = child.communicate(timeout=POLL_SECONDS)
            return stdout
        except subprocess.TimeoutExpired:
            if signals.received is not None and deadline is None:
                child.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + MIGRATOR_STOP_GRACE
            elif deadline is not None and time.monotonic() > deadline:
                child.kill()


def start_probe(env: Mapping[str, str], port: int, cleanup: contextlib.ExitStack) -> subprocess.Popen[bytes]:
    # Its own process group: Ctrl-C reaches us only, and we stop the probe after it, in order.
    probe = subprocess.Popen(
        [sys.executable, "-m", "probe"], env=dict(env), process_group=0, preexec_fn=die_with_parent
    )
    cleanup.callback(stop_probe, probe)
    return probe


def die_with_parent() -> None:
    """In the child: SIGTERM when we die, even by SIGKILL, so no probe outlives `make run`."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_probe(probe: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    code = stop_process(probe, PROBE_STOP_GRACE)
    say(f"stopped the probe, exit code {code} ({time.monotonic() - started:.1f} s)")


def readyz_status(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    with contextlib.closing(conn):
        conn.request("GET", "/readyz?verbose")
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")


def wait_ready(probe: subprocess.Popen[bytes], port: int, signals: StopSignals) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        signals.check()
        if probe.poll() is not None:
            raise SetupFailed(
                f"kata-probe exited with code {probe.returncode} before it was ready",
                "see its messages above",
            )
        try:
            status, body = readyz_status(port)
        except OSError as exc:
            last = f"no answer ({exc.__class__.__name__})"
        else:
            if status == 200:
                return f"http://{LOOPBACK}:{port}/readyz answers 200"
            last = f"{status}: {tail(body, 5)}"
        with contextlib.suppress(subprocess.TimeoutExpired):
            probe.wait(POLL_SECONDS)  # the pause between polls; returns early if the probe dies
    raise SetupFailed(
        f"/readyz did not answer 200 within {READY_TIMEOUT:.0f} s; last: {last}",
        f"the failing check is named above; curl http://{LOOPBACK}:{port}/readyz?verbose",
    )


def run_step(number: int, name: str, action: Callable[[], str], signals: StopSignals) -> None:
    signals.check()
    started = time.monotonic()
    try:
        summary = action()
    except SetupFailed as failure:
        signals.check()  # a step our own stop cut short did not fail
        say(f"[{number}/{STEPS}] {name}: FAILED ({time.monotonic() - started:.1f} s): {failure.problem}")
        say(f"      how to fix: {failure.fix}")
        raise Reported from failure
    say(f"[{number}/{STEPS}] {name}: {summary} ({time.monotonic() - started:.1f} s)")


class LocalRun:
    """The four steps, and what they started, stopped in reverse order by `close()`."""

    def __init__(self, env: Mapping[str, str], signals: StopSignals) -> None:
        self.env = dict(env)
        self.signals = signals
        self.cleanup = contextlib.ExitStack()
        self.shown_url = ""

    def database(self) -> str:
        given = self.env.get("DATABASE_URL", "").strip()
        if given:
            try:
                self.shown_url = parse_database_url(given).redacted()
            except InvalidDatabaseUrl as exc:
                fix = "fix DATABASE_URL, or unset it to use the embedded database"
                raise SetupFailed(str(exc), fix) from None
            return f"using DATABASE_URL from the environment: {self.shown_url}"
        server, summary = start_embedded(self.env, self.cleanup)
        self.env["DATABASE_URL"] = self.shown_url = server.url
        # The embedded server is direct; settings meant for another database must not leak in.
        self.env.pop("DATABASE_URL_UNPOOLED", None)
        self.env.pop("DATABASE_POOLED", None)
        return summary

    def start_probe(self, port: int) -> str:
        self.probe = start_probe(self.env, port, self.cleanup)
        return f"kata-probe started (pid {self.probe.pid}) on {LOOPBACK}:{port}"

    def run(self) -> int:
        started = time.monotonic()
        probe_port = port_setting(self.env, "PROBE_PORT", DEFAULT_PROBE_PORT)
        require_free_port(probe_port, "PROBE_PORT", "the probe")
        run_step(1, "database", self.database, self.signals)
        run_step(2, "migrations", lambda: migrate(self.env, self.signals), self.signals)
        self.env["PROBE_PORT"] = str(probe_port)
        # Locally nothing routes traffic by readiness, so Ctrl-C need not wait out a drain delay.
        self.env.setdefault("PROBE_SHUTDOWN_DELAY", "0")
        # A laptop's probe answers this machine only (the sidecar's default is every address).
        self.env.setdefault("PROBE_HOST", LOOPBACK)
        run_step(3, "probe", lambda: self.start_probe(probe_port), self.signals)
        probe = self.probe
        run_step(4, "ready", lambda: wait_ready(probe, probe_port, self.signals), self.signals)
        base = f"http://{LOOPBACK}:{probe_port}"
        say(
            f"running ({time.monotonic() - started:.1f} s since start). Ctrl-C stops it.\n"
            f"  DATABASE_URL={self.shown_url}\n  {base}/healthz   liveness\n"
            f"  {base}/readyz    readiness (?verbose names each check)\n  {base}/metrics   Prometheus metrics"
        )
        while probe.poll() is None:
            self.signals.check()
            with contextlib.suppress(subprocess.TimeoutExpired):
                probe.wait(POLL_SECONDS)
        say(f"kata-probe exited on its own with code {probe.returncode}; stopping")
        return 1


def main() -> int:
    signals = StopSignals()
    signals.install()
    local = LocalRun(os.environ, signals)
    try:
        return local.run()
    except Reported:
        return 1
    except SetupFailed as failure:
        say(f"failed: {failure.problem}\n      how to fix: {failure.fix}")
        return 1
    except Stop as stop:
        say(f"{stop.signal_name}: stopping")
        return 0
    finally:
        # Signals only ever set a flag, so nothing interrupts this: what was started is stopped.
        local.cleanup.close()


if __name__ == "__main__":
    sys.exit(main())
