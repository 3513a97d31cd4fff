"""`make run` stopped by signals at every phase, as a terminal, `timeout`, a supervisor or
`kill -- -PGID` sends them: it stops the probe and PostgreSQL and exits cleanly, whatever arrives,
however often. Each phase is found from what the run prints (or from PostgreSQL's pid file)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localpg.throwaway import free_port
from tests.make_run import MakeRun, stop_leftover_server
from tests.polling import wait_until
from tests.test_quickstart import NOT_IN_A_CLONE, OUTER_SETTINGS, REPO, port_open

# Generous bounds for a loaded machine: a run reaches its phases and stops within seconds.
PHASE_TIMEOUT = 120.0
STOP_TIMEOUT = 90.0
FIRST = "0001_first.sql"
SLOW = "0002_slow.sql"


class SignalledRun(MakeRun):
    """`make run` with the test interpreter's environment as `.venv` (`-o` treats its marker as
    up to date: the run after the first, without reinstalling), and the signals sent to it."""

    def __init__(self, tree: Path, env: dict[str, str]) -> None:
        venv = sys.prefix
        super().__init__(tree, env, "-o", f"{venv}/.installed-local", "run", f"VENV={venv}")
        self.sent: list[signal.Signals] = []

    def wait_for_line(self, pattern: str) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT
        while not re.search(pattern, self.output, re.M):
            if time.monotonic() > deadline or not self.collect(0.2):
                pytest.fail(f"no line matching {pattern!r} within {PHASE_TIMEOUT:.0f} s:\n{self.output}")

    def python_pid(self) -> int:
        """The recipe's interpreter: make's one child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def send(self, signum: signal.Signals, *, to_group: bool) -> None:
        self.sent.append(signum)
        if to_group:
            os.killpg(self.process.pid, signum)
        else:
            os.kill(self.python_pid(), signum)

    def wait_exit(self) -> int:
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            self.collect(0.2)
        if self.process.poll() is None:
            pytest.fail(f"make run still running {STOP_TIMEOUT:.0f} s after {self.sent}:\n{self.output}")
        # The rest of the output: until its end, or a while (a grandchild may hold the pipe).
        drained = time.monotonic() + 10
        while self.collect(0.2) and time.monotonic() < drained:
            pass
        return self.process.returncode


@dataclass(frozen=True)
class Tree:
    """A copy of the checkout (its own `.data/`) and two migrations folders for it."""

    root: Path
    fast: Path  # one quick migration
    slow: Path  # the same, then one that sleeps until cancelled

    @property
    def data_dir(self) -> Path:
        return self.root / ".data" / "postgres"


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    base = Path(tempfile.mkdtemp(prefix="kata-make-run-signals-"))
    base.chmod(0o755)  # PostgreSQL's service user must enter it
    root = base / "kata-context-db"
    shutil.copytree(REPO, root, ignore=NOT_IN_A_CLONE, symlinks=True)
    fast, slow = base / "fast", base / "slow"
    for folder in (fast, slow):
        folder.mkdir()
        (folder / FIRST).write_text("CREATE TABLE signals_first (id int);\n")
    (slow / SLOW).write_text("SELECT pg_sleep(600);\n")
    made = Tree(root, fast, slow)
    try:
        yield made
    finally:
        stop_leftover_server(made.root)
        shutil.rmtree(base, ignore_errors=True)


def start(tree: Tree, migrations: Path) -> tuple[SignalledRun, int]:
    env = {key: value for key, value in os.environ.items() if key not in OUTER_SETTINGS}
    probe_port = free_port()
    env.update(
        KATA_LOCAL_PG_PORT=str(free_port()),
        PROBE_PORT=str(probe_port),
        MIGRATIONS_DIR=str(migrations),
        PYTHONUNBUFFERED="1",
    )
    return SignalledRun(tree.root, env), probe_port


def assert_stopped_cleanly(run: SignalledRun, tree: Tree, probe_port: int) -> None:
    code = run.wait_exit()
    # make itself re-raises the signal it received once its recipe has ended; the recipe's own
    # status shows only as make's "Error N" line.
    assert code in (0, *(-s for s in run.sent)), (code, run.output)
    assert "Traceback" not in run.output, run.output
    assert not re.search(r"^make: \*\*\*.*Error", run.output, re.M), run.output
    assert re.search(r"^SIG(INT|TERM|HUP): stopping$", run.output, re.M), run.output
    assert "stopped PostgreSQL" in run.output, run.output

    def group_gone() -> bool:
        try:
            os.killpg(run.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, STOP_TIMEOUT, "every process of make run's group to exit")
    assert not (tree.data_dir / "postmaster.pid").exists(), "PostgreSQL is still running"
    assert not port_open(probe_port), "the probe still listens"


@pytest.mark.parametrize(
    ("signals", "to_group"),
    [
        ([signal.SIGTERM], True),
        ([signal.SIGTERM, signal.SIGTERM], True),  # timeout(1): the child, then the group
        ([signal.SIGHUP], True),  # the terminal closed
        ([signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT], True),
        ([signal.SIGTERM], False),  # a `kill` of the interpreter alone: make never hears of it
    ],
    ids=["term", "term-twice", "hup", "mixed", "term-to-python"],
)
def test_signals_while_running_stop_the_probe_and_postgres(
    tree: Tree, signals: list[signal.Signals], to_group: bool
) -> None:
    run, probe_port = start(tree, tree.fast)
    try:
        run.wait_for_line(r"Ctrl-C stops it")
        for signum in signals:
            run.send(signum, to_group=to_group)
        assert_stopped_cleanly(run, tree, probe_port)
        assert "stopped the probe, exit code 0" in run.output, run.output
    finally:
        run.kill()


def test_signals_while_stopping_change_nothing(tree: Tree) -> None:
    run, probe_port = start(tree, tree.fast)
    try:
        run.wait_for_line(r"Ctrl-C stops it")
        python = run.python_pid()
        run.send(signal.SIGTERM, to_group=True)
        run.wait_for_line(r"^SIGTERM: stopping$")
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) * 3:
            run.sent.append(signum)
            for send in (lambda s: os.killpg(run.process.pid, s), lambda s: os.kill(python, s)):
                with contextlib.suppress(ProcessLookupError):  # it has already finished stopping
                    send(signum)
        assert_stopped_cleanly(run, tree, probe_port)
    finally:
        run.kill()


def test_signals_while_migrating_cancel_the_migration_and_stop_postgres(tree: Tree) -> None:
    run, probe_port = start(tree, tree.slow)
    try:
        run.wait_for_line(rf'"event": "migration_started", "file": "{SLOW}"')
        run.send(signal.SIGINT, to_group=False)  # the interpreter passes it on to the migrator
        run.send(signal.SIGTERM, to_group=True)
        assert_stopped_cleanly(run, tree, probe_port)
        assert '"event": "interrupted"' in run.output, run.output  # the migrator rolled back
        assert "[2/4] migrations" not in run.output, run.output
    finally:
        run.kill()


def test_signals_while_postgres_starts_stop_it_once_started(tree: Tree) -> None:
    run, probe_port = start(tree, tree.fast)
    try:
        wait_until(
            lambda: (tree.data_dir / "postmaster.pid").exists() or run.process.poll() is not None,
            PHASE_TIMEOUT,
            "PostgreSQL to start",
        )
        run.send(signal.SIGTERM, to_group=True)
        run.send(signal.SIGINT, to_group=True)
        assert_stopped_cleanly(run, tree, probe_port)
    finally:
        run.kill()


def test_signals_while_waiting_for_the_probe_stop_it(tree: Tree) -> None:
    run, probe_port = start(tree, tree.fast)
    try:
        run.wait_for_line(r"^\[3/4\] probe: ")
        run.send(signal.SIGINT, to_group=True)
        run.send(signal.SIGINT, to_group=True)
        assert_stopped_cleanly(run, tree, probe_port)
        assert "stopped the probe" in run.output, run.output
    finally:
        run.kill()
