"""Throwaway PostgreSQL servers on a free loopback port, removed when stopped: for the tests
(the wheel's 16 and 18 with pgvector, Debian's 15 without) and the benchmarks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from localpg.cluster import Cluster, give, tail
from localpg.install import reachable_install, wheel_install
from localpg.processes import frozen_tree, process_tree

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "pg-admin-pw"


def wheel_bin_dir(major: int = 16) -> Path:
    """The wheel's PostgreSQL 16 or 18 (with pgvector), as the service user can run it."""
    install = wheel_install(major)
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    return reachable_install(install, Path(tempfile.gettempdir()) / f"kata-pginstall-{digest}") / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def owned_tempdir(prefix: str) -> Path:
    """A directory the service user owns, outside root's private pytest tmp tree."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    give(path)
    path.chmod(0o700)
    return path


@dataclass
class PostgresServer:
    """A running PostgreSQL on 127.0.0.1:port; `stop()` removes everything it made."""

    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int
    log_file: Path
    extra_settings: tuple[str, ...] = ()

    @property
    def cluster(self) -> Cluster:
        return Cluster(self.bin_dir, self.data_dir, self.log_file)

    @classmethod
    def start(cls, bin_dir: Path, *, settings: Sequence[str] = ()) -> PostgresServer:
        root = owned_tempdir("kata-pg-")
        server = cls(bin_dir, root / "data", root, free_port(), root / "server.log", tuple(settings))
        created = server.cluster.initdb(
            SUPERUSER, SUPERUSER_PASSWORD, "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"
        )
        if created.returncode != 0:
            raise RuntimeError(f"initdb failed: {tail(created.stderr)}")
        server.resume()
        return server

    def options(self) -> list[str]:
        base = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.socket_dir}",
            "-c fsync=off",
            "-c max_connections=200",
            "-c full_page_writes=off",
        ]
        return base + [f"-c {s}" for s in self.extra_settings]

    def resume(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        started = self.cluster.start(self.options())
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {tail(started.stderr or started.stdout)}")

    def halt(self, mode: str = "fast") -> None:
        self.cluster.stop(mode)

    def postmaster_pid(self) -> int:
        return self.cluster.postmaster_pid()

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, walwriter...)."""
        return process_tree(self.postmaster_pid())

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """The whole server stopped with SIGSTOP (a hung host, a storage stall) and always
        resumed with SIGCONT: its sockets stay open, and nothing on them is ever answered."""
        return frozen_tree(self.postmaster_pid())

    def stop(self) -> None:
        self.halt("immediate")
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = SUPERUSER_PASSWORD if password is None and user == SUPERUSER else password
        auth = quote(user, safe="") + (f":{quote(secret, safe='')}" if secret else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def psql_command(self, database: str = "postgres") -> list[str]:
        """psql as the superuser over the Unix socket, unaligned, stopping at the first error."""
        return [
            str(self.bin_dir / "psql"),
            *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
            *("-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", database),
        ]

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser; returns unaligned output."""
        result = subprocess.run(
            [*self.psql_command(database), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
        )
        return result.stdout.strip()

    def schema_dump(self, database: str, *, owners: bool = True) -> str:
        """`pg_dump --schema-only` with this server's own pg_dump, without the per-run
        `\\restrict` key lines of PostgreSQL 16.10+ (they differ on every run)."""
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_dump"),
                "--schema-only",
                *(() if owners else ("--no-owner",)),
                *("-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, database),
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
        )
        restrict = ("\\restrict", "\\unrestrict")
        return "\n".join(line for line in result.stdout.splitlines() if not line.startswith(restrict))

    def psql_session(
        self, database: str, sql: str | None = None, *, application_name: str = "psql"
    ) -> subprocess.Popen[str]:
        """A session left running (to hold a lock, say) until killed: `sql` as its command,
        or without it whatever the caller writes to its stdin, ending at end of input."""
        command = self.psql_command(database) + (["-c", sql] if sql is not None else [])
        return subprocess.Popen(
            command,
            env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD, "PGAPPNAME": application_name},
            stdin=subprocess.PIPE if sql is None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_role(self, name: str, password: str, *attributes: str) -> None:
        self.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}' {' '.join(attributes)}")


@contextlib.contextmanager
def running_server(bin_dir: Path, *, settings: Sequence[str] = ()) -> Iterator[PostgresServer]:
    server = PostgresServer.start(bin_dir, settings=settings)
    try:
        yield server
    finally:
        server.stop()
