"""The processes the development tooling starts and stops: a server's process tree read from
/proc, the whole tree frozen with SIGSTOP, and a child stopped politely, then by force."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

# After SIGKILL a process cannot delay its exit; this only bounds a wait on an unkillable one.
KILL_WAIT_S: Final = 10.0


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent` (a postmaster's backends and helpers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The field after the command name (which may hold spaces) in parentheses: state, ppid.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def process_tree(root: int) -> list[int]:
    """`root` and its children, root first."""
    return [root, *children(root)]


@contextlib.contextmanager
def frozen_tree(root: int) -> Iterator[None]:
    """`root` and its children stopped with SIGSTOP inside the block (a hung host, a storage
    stall: sockets stay open and nothing on them is answered), always resumed with SIGCONT."""
    os.kill(root, signal.SIGSTOP)
    stopped = [root]
    try:
        # The children are read once the root is stopped, so it cannot fork one we would miss.
        stopped.extend(child for child in children(root) if _stop(child))
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _stop(pid: int) -> bool:
    """SIGSTOP; False when the process had already exited (a backend that ended meanwhile)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    return True


def stop_process(process: subprocess.Popen[Any], grace: float) -> int:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL; the exit code. A no-op on a process
    that has already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(KILL_WAIT_S)
    return process.returncode
