"""Open asyncpg connections with the options every caller here needs."""

from __future__ import annotations

import ssl
from dataclasses import replace
from typing import Any

import asyncpg

from pgconn.config import SettingsError
from pgconn.dsn import DatabaseUrl


def with_tls(url: DatabaseUrl) -> DatabaseUrl:
    """The URL with its TLS context built once for every connection made with it: loading the CA
    and client certificates is file I/O that each connection would otherwise repeat."""
    return replace(url, tls=ssl_option(url))


def ssl_option(url: DatabaseUrl) -> ssl.SSLContext | str:
    """asyncpg's `ssl=` for the URL's sslmode; verify-ca/verify-full honour `sslrootcert`.

    SettingsError when a certificate file cannot be used: that is configuration, which no retry
    fixes, not a network error."""
    mode = url.sslmode
    if mode not in ("verify-ca", "verify-full"):
        return mode
    try:
        context = ssl.create_default_context(cafile=url.param("sslrootcert"))
    except OSError as exc:  # ssl.SSLError included
        raise SettingsError(certificate_problem("sslrootcert", url.param("sslrootcert"), exc)) from None
    context.check_hostname = mode == "verify-full"
    cert, key = url.param("sslcert"), url.param("sslkey")
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except OSError as exc:  # ssl.SSLError included
            raise SettingsError(certificate_problem("sslcert/sslkey", cert, exc)) from None
    return context


def certificate_problem(param: str, path: str | None, exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):  # a subclass of OSError: test it first
        problem = f"not a usable PEM certificate or key ({exc.reason or 'unknown reason'})"
    else:
        problem = exc.strerror or type(exc).__name__
    return (
        f"the URL's {param} file {path!r} cannot be used: {problem}; fix the path (in Kubernetes, "
        "the mounted Secret) or the sslmode"
    )


def connect_options(url: DatabaseUrl, *, application_name: str, timeout: float) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect` and `asyncpg.create_pool`.

    `statement_cache_size=0`: no named prepared statements, so a transaction-mode pooler
    that was not detected cannot break us; our queries run rarely, so a cache buys nothing.
    Only `application_name` is sent as a startup setting: PgBouncer rejects unknown ones.
    """
    return {
        "host": url.host,
        "port": url.port,
        "user": url.user,
        "password": url.password,
        "database": url.database,
        "ssl": url.tls if url.tls is not None else ssl_option(url),
        # The URL may shorten the caller's per-attempt bound, never lengthen it: the migrator's retry
        # loop and the probe's round rely on it.
        "timeout": min(url.connect_timeout, timeout) if url.connect_timeout else timeout,
        "statement_cache_size": 0,
        "server_settings": {"application_name": url.param("application_name") or application_name},
    }


async def connect(url: DatabaseUrl, *, application_name: str, timeout: float) -> asyncpg.Connection:
    """One connection; exceptions are asyncpg's or OSError, classify them with `pgconn.errors`."""
    return await asyncpg.connect(**connect_options(url, application_name=application_name, timeout=timeout))
