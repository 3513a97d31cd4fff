"""A real PgBouncer in transaction mode in front of a test PostgreSQL, on a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from localpg.install import SERVICE_USER, as_service_user, service_user
from localpg.processes import stop_process
from localpg.throwaway import PostgresServer, free_port, owned_tempdir
from tests.polling import wait_until

PGBOUNCER = Path("/usr/sbin/pgbouncer")


@dataclass
class PgBouncer:
    """`pool_mode = transaction`, `auth_type = plain` from a userlist; runs as the service user."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str, user: str, password: str) -> str:
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def logs(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, 10)
        shutil.rmtree(self.directory, ignore_errors=True)


def write_config(
    directory: Path, server: PostgresServer, port: int, users: dict[str, str], pool_size: int
) -> Path:
    userlist = "".join(f'"{user}" "{password}"\n' for user, password in users.items())
    (directory / "userlist.txt").write_text(userlist)
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={server.port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        f"unix_socket_dir = {directory}\n"
        "auth_type = plain\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 500\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    if service_user():
        for path in directory.iterdir():
            shutil.chown(path, SERVICE_USER, SERVICE_USER)
    return config


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    def accepts() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    wait_until(accepts, timeout, f"pgbouncer to listen on {port}", process=process, interval=0.02)


@contextlib.contextmanager
def running_pgbouncer(
    server: PostgresServer, users: dict[str, str], *, pool_size: int = 5
) -> Iterator[PgBouncer]:
    directory = owned_tempdir("kata-pgbouncer-")
    port = free_port()
    config = write_config(directory, server, port, users, pool_size)
    process = subprocess.Popen(as_service_user([str(PGBOUNCER), str(config)]), stderr=subprocess.DEVNULL)
    bouncer = PgBouncer(directory, port, process)
    try:
        wait_listening(port, process)
        yield bouncer
    finally:
        bouncer.stop()
