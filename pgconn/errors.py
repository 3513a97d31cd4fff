"""Turn driver and network exceptions into short, fixed texts safe to show anyone."""

from __future__ import annotations

import asyncio
import socket
import ssl
from enum import StrEnum
from typing import Final

import asyncpg


class Reason(StrEnum):
    """Why talking to the database failed, as a fixed text: driver messages can carry a host, a
    user or worse; these cannot. The value is what logs, health bodies and exits show."""

    AUTHENTICATION = "authentication failed"
    DATABASE_MISSING = "database does not exist"
    TOO_MANY_CONNECTIONS = "too many connections"
    SHUTTING_DOWN = "server shutting down"
    STARTING_UP = "server starting up"
    QUERY_CANCELED = "query canceled"
    LOCK_TIMEOUT = "lock timeout"
    CONNECTION_LOST = "connection lost"
    CONNECTION_FAILED = "connection failed"
    CONNECTION_REJECTED = "connection rejected"
    FEATURE_NOT_SUPPORTED = "feature not supported"
    PERMISSION_DENIED = "permission denied"
    # Found by a query after connecting (pg_is_in_recovery()), not by an exception.
    HOT_STANDBY = "server is a read-only hot standby"
    TIMEOUT = "timeout"
    TLS = "TLS error"
    CONNECTION_REFUSED = "connection refused"
    HOST_NOT_FOUND = "host not found"
    NETWORK = "network error"
    CLIENT = "client error"
    SERVER = "server error"
    UNEXPECTED = "unexpected error"


SQLSTATE_REASONS: Final = {
    "28P01": Reason.AUTHENTICATION,
    "28000": Reason.AUTHENTICATION,
    "3D000": Reason.DATABASE_MISSING,
    "53300": Reason.TOO_MANY_CONNECTIONS,
    "57P01": Reason.SHUTTING_DOWN,
    "57P02": Reason.SHUTTING_DOWN,
    "57P03": Reason.STARTING_UP,
    "57014": Reason.QUERY_CANCELED,
    "55P03": Reason.LOCK_TIMEOUT,
    "08006": Reason.CONNECTION_LOST,
    "08001": Reason.CONNECTION_FAILED,
    "08004": Reason.CONNECTION_REJECTED,
    "0A000": Reason.FEATURE_NOT_SUPPORTED,
    "42501": Reason.PERMISSION_DENIED,
}


def classify_error(exc: BaseException) -> str:
    """A fixed, credential-free description of why talking to the database failed."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in SQLSTATE_REASONS:
        return SQLSTATE_REASONS[sqlstate]
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return Reason.AUTHENTICATION
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Reason.TIMEOUT
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS
    if isinstance(exc, ConnectionError) and "rejected ssl upgrade" in str(exc).lower():
        # asyncpg's answer when sslmode requires TLS and the server has none: not a network fault.
        return Reason.TLS
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECTION_REFUSED
    if isinstance(exc, socket.gaierror):
        return Reason.HOST_NOT_FOUND
    if isinstance(exc, ConnectionError | asyncpg.ConnectionDoesNotExistError):
        return Reason.CONNECTION_LOST
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return _interface_text(exc)
    if isinstance(exc, OSError):
        return Reason.NETWORK
    if isinstance(exc, asyncpg.PostgresError):
        return f"{Reason.SERVER} (SQLSTATE {sqlstate})" if sqlstate else Reason.SERVER
    return Reason.UNEXPECTED


def _interface_text(exc: BaseException) -> str:
    message = str(exc).lower()
    if "ssl" in message or "tls" in message:
        return Reason.TLS
    if "closed" in message or "connection" in message:
        return Reason.CONNECTION_LOST
    return Reason.CLIENT


def is_authentication_failure(exc: BaseException) -> bool:
    """Retrying a wrong password only locks accounts and fills logs: callers stop at once."""
    return classify_error(exc) == Reason.AUTHENTICATION


def is_connection_loss(exc: BaseException) -> bool:
    """A broken connection or a server shutting down (57P01-57P03), not a bug in us: what the
    migrator retries or reports as exit 3. Broader than classify_error's CONNECTION_LOST, which
    names one reason among many for a text; this answers yes or no for any exception."""
    # Not any OSError: a local PermissionError is a bug or a setup fault, not a lost database.
    # asyncpg's InternalClientError ("cannot switch to state ...") is what a backend terminated in
    # the middle of an operation sometimes leaves instead of ConnectionDoesNotExistError.
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and (sqlstate.startswith(("08", "57P")))
