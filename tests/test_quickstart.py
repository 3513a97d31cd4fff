"""The README's first command, `make run`, from a clean copy of the tree: ready, stopped, restarted."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpg.throwaway import free_port
from tests.make_run import MakeRun, stop_leftover_server

REPO = Path(__file__).resolve().parent.parent
# What a fresh clone does not have: environments, local data, caches, build output.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".data",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "*.egg-info",
    "build",
    "dist",
    ".work",
)
# The first run creates .venv and installs .[local] (about 20 s with pip's cache).
FIRST_READY_TIMEOUT = 240.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Settings from the outer environment that would change what `make run` does in the copy.
OUTER_SETTINGS = (
    "DATABASE_URL",
    "DATABASE_URL_UNPOOLED",
    "DATABASE_POOLED",
    "MIGRATIONS_DIR",
    "PROBE_SHUTDOWN_DELAY",
    "PROBE_HOST",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "VENV",
    "PY",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)


class QuickstartRun(MakeRun):
    """`make run` as the README's reader runs it: until ready, then Ctrl-C."""

    def __init__(self, tree: Path, env: dict[str, str]) -> None:
        super().__init__(tree, env, "run")

    def wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.collect(1)
                pytest.fail(f"make run exited with {self.process.returncode} before ready:\n{self.output}")
            if readyz(port) == 200:
                break
            self.collect(0.2)  # the pause between polls doubles as output collection
        else:
            pytest.fail(f"/readyz on port {port} not 200 within {timeout:.0f} s:\n{self.output}")
        # Ready as the user sees it: the URLs are printed once make run's own poll succeeded.
        while "Ctrl-C stops it" not in self.output and time.monotonic() < deadline:
            self.collect(0.2)
        assert f"http://127.0.0.1:{port}/readyz" in self.output, self.output

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole foreground process group, then wait for make to end."""
        os.killpg(self.process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            self.collect(0.2)
        if self.process.poll() is None:
            pytest.fail(f"make run still running {STOP_TIMEOUT:.0f} s after SIGINT:\n{self.output}")
        self.collect(1)
        return self.process.returncode


def readyz(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def clean_copy() -> Iterator[Path]:
    """The tree as a fresh clone has it, in a directory PostgreSQL's service user can enter."""
    root = Path(tempfile.mkdtemp(prefix="kata-quickstart-"))
    root.chmod(0o755)  # mkdtemp makes it 0700; a clone is normally enterable by other users
    tree = root / "kata-context-db"
    shutil.copytree(REPO, tree, ignore=NOT_IN_A_CLONE, symlinks=True)
    try:
        yield tree
    finally:
        stop_leftover_server(tree)
        shutil.rmtree(root, ignore_errors=True)


def test_make_run_from_a_clean_copy_is_ready_stops_and_restarts(clean_copy: Path) -> None:
    pg_port, probe_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in OUTER_SETTINGS}
    env.update(KATA_LOCAL_PG_PORT=str(pg_port), PROBE_PORT=str(probe_port), PYTHONUNBUFFERED="1")
    data_dir = clean_copy / ".data" / "postgres"

    first = QuickstartRun(clean_copy, env)
    try:
        first.wait_ready(probe_port, FIRST_READY_TIMEOUT)
        code = first.interrupt()
    finally:
        first.kill()
    # make re-raises the SIGINT it got once its recipe (which exits 0 on SIGINT) has finished.
    assert code in (0, -signal.SIGINT), first.output
    assert "started PostgreSQL 16." in first.output, first.output
    assert f"DATABASE_URL=postgresql://kata:kata-local@127.0.0.1:{pg_port}/kata" in first.output
    assert "new data in .data/postgres" in first.output, first.output
    migrations = len(list((clean_copy / "migrations").glob("[0-9]*_*.sql")))
    assert f"[2/4] migrations: applied {migrations} migration(s)" in first.output, first.output
    assert "stopped the probe, exit code 0" in first.output, first.output
    assert "stopped PostgreSQL" in first.output, first.output
    assert (data_dir / "PG_VERSION").is_file(), "the data directory must survive the stop"
    assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL still running after SIGINT"
    assert not port_open(pg_port) and not port_open(probe_port)

    second = QuickstartRun(clean_copy, env)
    try:
        second.wait_ready(probe_port, READY_TIMEOUT)
        code = second.interrupt()
    finally:
        second.kill()
    assert code in (0, -signal.SIGINT), second.output
    assert "existing data in .data/postgres" in second.output, second.output
    # The migrator's own event, and the summary line built from the ledger.
    assert "nothing_to_do" in second.output, second.output
    assert "[2/4] migrations: nothing to migrate" in second.output, second.output
    assert "migration_applied" not in second.output, second.output
    assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL still running after the second SIGINT"
