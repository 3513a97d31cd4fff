"""The probe's connection: one, held between rounds, reopened after a failure. Not a pool: the
monitor runs one round at a time and nothing else queries.

asyncpg's own pool runs a reset query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
RESET ALL`) on every release: one more transaction per round for nothing. Holding the
connection ourselves keeps the database load at exactly the round's queries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import asyncpg

from pgconn.connect import connect
from pgconn.dsn import DatabaseUrl

STATES: Final = ("idle", "busy")


class HeldConnection:
    """At most one long-lived connection; a failed use throws it away and the next reconnects."""

    def __init__(self, url: DatabaseUrl, *, application_name: str, timeout: float) -> None:
        self._url = url
        self._application_name = application_name
        self._timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._busy = False
        self._lock = asyncio.Lock()

    def count(self, state: str) -> int:
        """Connections in `state` (idle or busy), for the kata_db_pool_connections gauge."""
        if self._conn is None or self._conn.is_closed():
            return 0
        return int(self._busy if state == "busy" else not self._busy)

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[asyncpg.Connection]:
        """The held connection, opened first if needed; discarded if the body raises."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                self._conn = await connect(
                    self._url, application_name=self._application_name, timeout=self._timeout
                )
            self._busy = True
            try:
                yield self._conn
            except BaseException:
                self.discard()
                raise
            finally:
                self._busy = False

    def discard(self) -> None:
        """Drop the connection without a network round trip: its state is unknown after a failure."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        """Close politely, but never wait longer than the timeout on a database that hangs."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=self._timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()
