"""A hung database: every process of a throwaway server stopped with SIGSTOP, so connections
stay open and nothing answers (the hard kind of outage: timeouts, not refusals)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from localpg.throwaway import PostgresServer


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every backend and helper it forked."""
    postmaster = server.postmaster_pid()
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The field after the command name (which may hold spaces) in parentheses: state, ppid.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(server: PostgresServer) -> Iterator[None]:
    """Every server process stopped inside the block, resumed after it."""
    os.kill(server.postmaster_pid(), signal.SIGSTOP)  # first, so it forks nothing new
    pids = server_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
