"""Turn driver and network exceptions into short, fixed texts safe to show anyone."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Final

import asyncpg

# SQLSTATE -> fixed text. Driver messages can carry a host, a user or worse; these cannot.
SQLSTATE_TEXTS: Final = {
    "28P01": "authentication failed",
    "28000": "authentication failed",
    "3D000": "database does not exist",
    "53300": "too many connections",
    "57P01": "server shutting down",
    "57P02": "server shutting down",
    "57P03": "server starting up",
    "57014": "query canceled",
    "55P03": "lock timeout",
    "08006": "connection lost",
    "08001": "connection failed",
    "08004": "connection rejected",
    "0A000": "feature not supported",
    "42501": "permission denied",
}
AUTHENTICATION: Final = "authentication failed"


def classify_error(exc: BaseException) -> str:
    """A fixed, credential-free description of why talking to the database failed."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in SQLSTATE_TEXTS:
        return SQLSTATE_TEXTS[sqlstate]
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return AUTHENTICATION
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "TLS error"
    if isinstance(exc, ConnectionError) and "rejected ssl upgrade" in str(exc).lower():
        # asyncpg's answer when sslmode requires TLS and the server has none: not a network fault.
        return "TLS error"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ConnectionError | asyncpg.ConnectionDoesNotExistError):
        return "connection lost"
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return _interface_text(exc)
    if isinstance(exc, OSError):
        return "network error"
    if isinstance(exc, asyncpg.PostgresError):
        return f"server error (SQLSTATE {sqlstate})" if sqlstate else "server error"
    return "unexpected error"


def _interface_text(exc: BaseException) -> str:
    message = str(exc).lower()
    if "ssl" in message or "tls" in message:
        return "TLS error"
    if "closed" in message or "connection" in message:
        return "connection lost"
    return "client error"


def is_authentication_failure(exc: BaseException) -> bool:
    """Retrying a wrong password only locks accounts and fills logs: callers stop at once."""
    return classify_error(exc) == AUTHENTICATION
