"""The migrator's own session: the limits its queries run under whatever the role or the database
sets, and, for the verbs that write, a server that takes writes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.connection import NotReady
from migrator.database_errors import ReadOnlyDatabase
from migrator.limits import RunLimits
from pgconn.errors import Reason
from schema.quoting import quote_ident

SETTING: Final = "default_transaction_read_only"
WRITABLE_QUERY: Final = f"""
SELECT pg_is_in_recovery() AS standby,
       current_setting('{SETTING}')::bool AS read_only,
       (SELECT source FROM pg_catalog.pg_settings WHERE name = '{SETTING}') AS source,
       current_database() AS database, session_user AS role
"""


async def limit(conn: asyncpg.Connection, limits: RunLimits) -> None:
    """The migrator's limits for the whole session, right after connecting: only on the direct
    connection of `up` and `baseline`, since through a transaction pooler a session SET stays on
    the server connection for its next client. idle_session_timeout off: a role's value meant for
    forgotten sessions must not end a migrator that polls for the lock."""
    settings = list(limits.timeouts())
    if conn.get_server_version().major >= 14:
        settings.append("idle_session_timeout = 0")
    await conn.execute("; ".join(f"SET {s}" for s in settings))


@contextlib.asynccontextmanager
async def reading(conn: asyncpg.Connection, limits: RunLimits) -> AsyncIterator[None]:
    """A read-only transaction under the migrator's limits, for the verbs that only read and may go
    through a pooler: SET LOCAL ends with the transaction, so nothing leaks to another client.
    BEGIN and the limits in one query: between two, a role's idle_in_transaction_session_timeout
    of 1 ms would end the session."""
    await conn.execute("; ".join(["BEGIN READ ONLY", *(f"SET LOCAL {s}" for s in limits.timeouts())]))
    try:
        yield
    except BaseException:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


@dataclass(frozen=True)
class Writability:
    """Whether the server takes this session's writes, and if not, why."""

    standby: bool
    read_only: bool
    source: str
    database: str
    role: str

    def require_primary(self) -> None:
        """A hot standby is retried like an unreachable server: during a failover the name may
        still lead to the old primary, now a standby, for a while."""
        if self.standby:
            raise NotReady(Reason.HOT_STANDBY)

    def require_writable(self, verb: str) -> None:
        """ReadOnlyDatabase (exit 2) naming where default_transaction_read_only is set and the
        statement that resets it."""
        if not self.read_only:
            return
        where, fix = self.where_set()
        raise ReadOnlyDatabase(
            f"the database takes no writes: {SETTING} is on, set {where}; `kata-migrate {verb}` writes "
            "(tables, indexes, the ledger), so nothing was done. Unless that is on purpose (the probe's "
            f"role is read-only: give the Job the owner's URL), run {fix} as an administrator, then run again"
        )

    def where_set(self) -> tuple[str, str]:
        """Where the setting comes from (pg_settings.source: the one that won), and what resets it.
        It makes the administrator's session read-only too, which READ WRITE overrides."""
        database, role = quote_ident(self.database), quote_ident(self.role)
        scoped = {
            "database": (f"for database {database}", f"ALTER DATABASE {database}"),
            "user": (f"for role {role}", f"ALTER ROLE {role}"),
            "database user": (
                f"for role {role} in database {database}",
                f"ALTER ROLE {role} IN DATABASE {database}",
            ),
        }
        if self.source in scoped:
            where, alter = scoped[self.source]
            return where, f"`BEGIN READ WRITE; {alter} RESET {SETTING}; COMMIT;`"
        where = (
            "in the server's configuration"
            if self.source == "configuration file"
            else f"by the {self.source}"
        )
        return (
            where,
            f"`ALTER SYSTEM RESET {SETTING};` then `SELECT pg_reload_conf();` (or the service's settings)",
        )


async def writability(conn: asyncpg.Connection) -> Writability:
    """One query, before any DDL."""
    row = await conn.fetchrow(WRITABLE_QUERY)
    assert row is not None
    text = {key: str(row[key]) for key in ("source", "database", "role")}
    return Writability(bool(row["standby"]), bool(row["read_only"]), **text)
