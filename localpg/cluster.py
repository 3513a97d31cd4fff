"""One PostgreSQL data directory and the wheel's binaries that run it: initdb, pg_ctl start and
stop, single-user SQL, all as the service user when we are root. The throwaway servers of the
tests and the persistent one of `make run` are both made of this."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localpg.install import as_service_user, service_user

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Cluster:
    """`data_dir` (made by `initdb`) and `log_file` belong to the service user."""

    bin_dir: Path
    data_dir: Path
    log_file: Path

    def command(self, program: str, *args: str) -> list[str]:
        return as_service_user([str(self.bin_dir / program), *args])

    def run(self, program: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # Its own session: a Ctrl-C or SIGTERM sent to the caller's process group (`make run`'s)
        # must not kill pg_ctl halfway through a start or stop; the caller decides when to stop.
        return subprocess.run(
            self.command(program, *args),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )

    def initdb(self, superuser: str, password: str, *options: str) -> subprocess.CompletedProcess[str]:
        """initdb with `superuser` and its password (read from a file the server user can read,
        removed afterwards: never on a command line)."""
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(password + "\n")
        give(pwfile)
        try:
            return self.run(
                "initdb",
                *("-D", str(self.data_dir), "-U", superuser, f"--pwfile={pwfile}"),
                *("-E", "UTF8", "--locale=C", *options),
            )
        finally:
            pwfile.unlink()

    def single_user(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        """SQL through `postgres --single`: no network, no password, before the first start."""
        return self.run(
            "postgres",
            *("--single", "-D", str(self.data_dir), "-c", "exit_on_error=true", database),
            stdin=sql,
        )

    def start(self, options: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """`pg_ctl start -w`: returns once the server accepts connections (or failed to)."""
        return self.run(
            "pg_ctl",
            *("-D", str(self.data_dir), "-l", str(self.log_file), "-o", " ".join(options)),
            *("-w", "-t", str(START_TIMEOUT_S), "start"),
        )

    def stop(self, mode: str = "fast") -> subprocess.CompletedProcess[str]:
        return self.run(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(START_TIMEOUT_S)
        )

    def running(self) -> bool:
        return self.run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[-1] if out.split() else "?"


def give(path: Path) -> None:
    """Hand a file or directory to the service user (a no-op when we are not root)."""
    user = service_user()
    if user:
        shutil.chown(path, user, user)


def tail(text: str, lines: int = 3) -> str:
    """The last lines of a tool's output, on one line, for an error message."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
