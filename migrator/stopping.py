"""How a run stops on SIGTERM, SIGINT or SIGHUP: the verb is cancelled (asyncpg sends a cancel
request for the running statement), and a run still going after a grace period has its database
connections closed without waiting."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Final

from migrator.errors import Interrupted
from migrator.events import EventLog

# SIGHUP (a closed terminal or session) stops a run like SIGTERM: rolled back, lock released, and
# a final log line, where its default action ended the process silently with 129.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Cancelling normally ends a run in milliseconds: the cancel request is one new connection, then
# ROLLBACK and the unlock are a round trip each, well under a second even across regions with TLS.
# Some waits never end that way: the server ignores a cancel request (and statement_timeout) while
# it waits for a client's COPY data, and a server or network path that stopped answering swallows
# the request and every reply. 10 s is many times what a slow link needs, and leaves 50 s of the
# Job's terminationGracePeriodSeconds (60) before kubelet's SIGKILL would cut the final log line.
STOP_GRACE: Final = 10.0


class Stop:
    """The stop a run's first signal requests; later signals change nothing (they are logged).

    `close_hard` closes the run's connections without waiting and says how many it closed: the
    server then rolls back an open transaction and releases the session lock on its own."""

    def __init__(
        self,
        task: asyncio.Task[object],
        log: EventLog,
        close_hard: Callable[[], int],
        grace: float = STOP_GRACE,
    ) -> None:
        self._task = task
        self._log = log
        self._close_hard = close_hard
        self._grace = grace
        self._timer: asyncio.TimerHandle | None = None
        self.signum: signal.Signals | None = None
        self.forced = False

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[Stop]:
        """The stop signals handled for the block; the grace timer never outlives it."""
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.request, signum)
        try:
            yield self
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
            if self._timer is not None:
                self._timer.cancel()

    def request(self, signum: signal.Signals) -> None:
        if self.signum is not None:
            self._log.warning(
                "signal", f"received {signum.name} while stopping: already stopping", signal=signum.name
            )
            return
        self.signum = signum
        self._log.warning("signal", f"received {signum.name}: cancelling", signal=signum.name)
        self._task.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._force)

    def _force(self) -> None:
        self.forced = True
        closed = self._close_hard()
        self._log.warning(
            "stop_forced",
            f"the run did not end within {self._grace:g} s of the signal: closing its {closed} database "
            "connection(s) without waiting",
            grace_s=self._grace,
            connections=closed,
        )

    def interrupted(self) -> Interrupted:
        """The error this stop ends the run with (exit 128 + the signal's number)."""
        assert self.signum is not None
        closed_after = self._grace if self.forced else None
        return Interrupted(self.signum.name, 128 + self.signum.value, closed_after=closed_after)
