"""`make run` as the tests drive it: in its own process group (as a terminal starts it), its
output collected line by line, killed with its whole group at the end, and the PostgreSQL a
failed run may leave behind stopped."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from localpg.cluster import Cluster
from localpg.local import server_binaries


class MakeRun:
    """`make ARGS` in `tree`; `lines` holds what it has printed so far (stdout and stderr)."""

    def __init__(self, tree: Path, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            ["make", *args],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def collect(self, timeout: float) -> bool:
        """Take what was printed, waiting up to `timeout` for a line; False at the end of output
        (then it waits up to `timeout` for make to exit instead, so a polling loop keeps its pace)."""
        if self.ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
            return False
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return True
        while line is not None:
            self.lines.append(line)
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return True
        self.ended = True
        return False

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL to make's whole process group, when it still runs (after a failed test)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def stop_leftover_server(checkout: Path) -> None:
    """Only after a failure: a server a run in `checkout` left must not outlive the tests (with
    the wheel's binaries, as PostgreSQL's user)."""
    data_dir = checkout / ".data" / "postgres"
    if (data_dir / "postmaster.pid").exists():
        home = data_dir.parent
        Cluster(server_binaries(home), data_dir, home / "postgres.log").stop("immediate")
