"""Which URL the migrator may use, and connecting to it with retries until a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg

from migrator import privileges
from migrator.database_errors import DatabaseUnreachable, PoolerRefused
from migrator.events import EventLog
from pgconn.connect import connect
from pgconn.dsn import DatabaseUrl
from pgconn.errors import Reason, classify_error
from pgconn.pooler import PoolerSetting, decide_pooled, is_pooler_host
from pgconn.settings import DatabaseSettings

FIRST_BACKOFF: Final = 0.25
MAX_BACKOFF: Final = 5.0
ATTEMPT_TIMEOUT: Final = 10.0
# Retrying cannot fix these: stop at once rather than hammer the server until the deadline.
# A certificate the client rejects (wrong CA, host name not in it) or a server without TLS for
# an sslmode that needs it stays so for the next attempt too.
FINAL_REASONS: Final = frozenset({Reason.AUTHENTICATION, Reason.DATABASE_MISSING, Reason.TLS})


class NotReady(Exception):
    """A server that answered but cannot serve the verb yet (a hot standby): retried like one that
    did not answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def direct_url(settings: DatabaseSettings) -> DatabaseUrl:
    """The URL for a session lock: never a pooled one. Pure, so exit 9 comes before any network call."""
    if settings.unpooled_url is not None:
        if is_pooler_host(settings.unpooled_url.host) and settings.pooled is not PoolerSetting.FALSE:
            raise PoolerRefused(
                f"DATABASE_URL_UNPOOLED points at a pooler host ({settings.unpooled_url.host}); set it to "
                "the direct (non-pooler) endpoint, e.g. on Neon the host without '-pooler'"
            )
        return settings.unpooled_url
    verdict = decide_pooled(settings.url, settings.pooled)
    if verdict.pooled:
        why = (
            "DATABASE_POOLED=true"
            if verdict.source == "setting"
            else f"its host {settings.url.host} is a pooler"
        )
        raise PoolerRefused(
            f"DATABASE_URL goes through a connection pooler ({why}), where the migration's session lock "
            "does not hold; set DATABASE_URL_UNPOOLED to the direct URL (on Neon: the same host without "
            "'-pooler'). Nothing was done"
        )
    return settings.url


def read_url(settings: DatabaseSettings) -> DatabaseUrl:
    """Read-only commands take no lock: the direct URL when given, else DATABASE_URL, pooled or not."""
    return settings.unpooled_url or settings.url


Prepare = Callable[[asyncpg.Connection], Awaitable[None]]


async def connect_with_retry(
    url: DatabaseUrl, *, application_name: str, timeout: float, log: EventLog, prepare: Prepare | None = None
) -> asyncpg.Connection:
    """Connect, retrying with exponential backoff for `timeout` seconds; DatabaseUnreachable after.
    `prepare` readies each new connection; its NotReady is retried like a failed connect, anything
    else it raises (a refusal, a failed query) ends the run as it is."""
    started = time.monotonic()
    deadline = started + timeout
    delay = FIRST_BACKOFF
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        failure: Exception
        try:
            conn = await connect(
                url, application_name=application_name, timeout=max(0.5, min(ATTEMPT_TIMEOUT, remaining))
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            failure, reason = exc, classify_error(exc)
        else:
            try:
                await ready(conn, prepare)
                return conn
            except NotReady as exc:
                failure, reason = exc, exc.reason
        waited = time.monotonic() - started
        if reason == Reason.PERMISSION_DENIED:  # no CONNECT on the database: a GRANT fixes it, not a wait
            raise privileges.connect_denied(url.user, url.database) from failure
        remaining = deadline - time.monotonic()
        if reason in FINAL_REASONS or remaining <= 0:
            raise DatabaseUnreachable(url.redacted(), reason, waited) from failure
        pause = min(delay, remaining)
        log.warning(
            "connect_retry",
            f"database not reachable yet ({reason}); retrying",
            attempt=attempt,
            reason=reason,
            retry_in_s=round(pause, 3),
            target=url.redacted(),
        )
        await asyncio.sleep(pause)
        delay = min(delay * 2, MAX_BACKOFF)


async def ready(conn: asyncpg.Connection, prepare: Prepare | None) -> None:
    """Run `prepare` on a new connection; close the connection when anything stops it."""
    if prepare is None:
        return
    try:
        await prepare(conn)
    except BaseException:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await conn.close()
        raise
