"""What a verb runs with: the settings, the migration files, the log and stdout, and the connections
it opens, each prepared (privileges checked, limits set) before the verb uses it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TextIO

import asyncpg

from migrator import conformance, privileges, session
from migrator.connection import connect_with_retry, read_url
from migrator.events import EventLog
from migrator.settings import MigratorSettings
from migrator.termination import Outcome
from pgconn.dsn import DatabaseUrl
from schema.catalog import Catalog
from schema.verdicts import SchemaState, read_state


@dataclass
class Context:
    settings: MigratorSettings
    catalog: Catalog
    log: EventLog
    stdout: TextIO
    # The verb creates, records or alters (`Verb.writes`): it runs as the owner, on a primary.
    # No default: a context built without it must not run `up` without the owner's checks.
    writes: bool
    # What the verb achieved, for the final event in the termination message (migrator/termination.py).
    outcome: Outcome = field(default_factory=Outcome)
    # Every connection the run opened, so that a stop signal can close them without waiting.
    connections: list[asyncpg.Connection] = field(default_factory=list)

    @property
    def application_name(self) -> str:
        return self.settings.database.application_name

    async def connect(self, url: DatabaseUrl) -> asyncpg.Connection:
        conn = await connect_with_retry(
            url,
            application_name=self.application_name,
            timeout=self.settings.connect_timeout,
            log=self.log,
            prepare=self._prepare,
        )
        conn.add_log_listener(self._server_notice)
        return conn

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        """Before the verb runs, under the migrator's own limits: the privileges it needs, and for a
        verb that writes a primary (a standby is waited for) that takes writes. The connection is
        the run's from here on, so a stop signal can close it even while this waits."""
        self.connections.append(conn)
        verb, limits = self.settings.command, self.settings.limits
        if not self.writes:
            async with session.reading(conn, limits):
                await privileges.check_access(conn, verb, writes=False)
            return
        await session.limit(conn, limits)
        found = await session.writability(conn)
        found.require_primary()
        # Before the read-only setting: the probe's role is read-only on purpose, and what is wrong
        # then is the Job's Secret, which the privilege check says.
        await privileges.check_access(conn, verb, writes=True)
        found.require_writable(verb)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a verb that only reads, in a read-only transaction under its limits."""
        conn = await self.connect(read_url(self.settings.database))
        try:
            async with session.reading(conn, self.settings.limits):
                yield conn
        finally:
            await conn.close()

    def close_connections_now(self) -> int:
        """Close every open connection of the run without waiting for the server (a pending query,
        a cancel request, a goodbye); how many were open."""
        open_ones = [conn for conn in self.connections if not conn.is_closed()]
        for conn in open_ones:
            conn.terminate()
        return len(open_ones)

    def _server_notice(self, conn: object, message: asyncpg.PostgresLogMessage) -> None:
        """Every NOTICE or WARNING the server sends (pgvector's "hnsw graph no longer fits into
        maintenance_work_mem", a NOTICE of IF NOT EXISTS) is an event, naming the file being applied."""
        severity = str(getattr(message, "severity_en", None) or getattr(message, "severity", "NOTICE"))
        fields = {key: getattr(message, key, None) for key in ("detail", "hint")}
        self.log.emit(
            "server_notice",
            str(getattr(message, "message", message)),
            level="warning" if severity == "WARNING" else "info",
            severity=severity,
            sqlstate=getattr(message, "sqlstate", None),
            **{key: value for key, value in fields.items() if value},
        )

    async def read_state(self) -> SchemaState:
        async with self.reading() as conn:
            return await read_state(conn, self.catalog)

    async def read_state_and_live(self) -> tuple[SchemaState, conformance.LiveReport]:
        """The ledger, and the live schema against the snapshot of the ledger's version."""
        async with self.reading() as conn:
            state = await read_state(conn, self.catalog)
            return state, await conformance.inspect(conn, self.catalog, state)

    def print_json(self, document: object) -> None:
        self.stdout.write(json.dumps(document, default=str) + "\n")
