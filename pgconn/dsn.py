"""Parse a PostgreSQL URL into its parts, and show it without its password."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pgconn.options import SettingsError, parse_port

SCHEMES: Final = frozenset({"postgres", "postgresql"})
SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq parameters we understand or may safely ignore; anything else is a typo worth
# stopping for, because asyncpg would send it to the server as a setting and PgBouncer
# rejects unknown startup parameters.
KNOWN_PARAMS: Final = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "application_name",
        "connect_timeout",
        "channel_binding",
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "target_session_attrs",
    }
)
REDACTED: Final = "***"


class InvalidDatabaseUrl(ValueError):
    """A database URL that cannot be used; the message never contains the password."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting} is not a usable PostgreSQL URL: {problem}")


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed PostgreSQL URL. `repr` and `redacted()` never show the password."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    @property
    def sslmode(self) -> str:
        return self.param("sslmode") or "prefer"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def with_password(self, password: str | None) -> DatabaseUrl:
        return replace(self, password=password)

    def redacted(self) -> str:
        """The URL as an operator may see it in a log: password replaced by ***."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += f":{REDACTED}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host.startswith("/"):
            host = ""
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in self.params)
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.database, safe='')}" + (
            f"?{query}" if query else ""
        )

    def scrub(self, text: str) -> str:
        """Remove this URL's password from any text, for messages built from driver errors."""
        if not self.password:
            return text
        for secret in {self.password, quote(self.password, safe="")}:
            text = text.replace(secret, REDACTED)
        return text

    def __str__(self) -> str:
        return self.redacted()


def raw_passwords(text: str) -> set[str]:
    """The passwords in a URL too broken to parse (as written and percent-decoded), so that a
    usage error about it cannot leak one."""
    found: set[str] = set()
    for pattern in (r"://[^/@:]*:([^@/]+)@", r"[?&]password=([^&]+)"):
        for match in re.finditer(pattern, text):
            found.update({match.group(1), unquote(match.group(1))})
    return {secret for secret in found if secret}


def parse_database_url(text: str, setting: str = "DATABASE_URL") -> DatabaseUrl:
    """Parse `postgres[ql]://user:password@host:port/db?params`; raise InvalidDatabaseUrl."""
    text = text.strip()
    if not text:
        raise InvalidDatabaseUrl(setting, "it is empty; set it to postgresql://USER:PASSWORD@HOST:5432/DB")
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise InvalidDatabaseUrl(
            setting, "it must start with postgresql:// or postgres:// (key=value strings are not supported)"
        )
    try:
        parts = urlsplit(text)
        port_text = _port_text(parts.netloc)
        hostname = parts.hostname or ""
    except ValueError as exc:
        raise InvalidDatabaseUrl(setting, "the host or port part is malformed") from _without_text(exc)
    if "," in parts.netloc.rpartition("@")[2]:
        raise InvalidDatabaseUrl(setting, "several hosts in one URL are not supported; give one host")
    params = _parse_params(parts.query, setting)
    host = dict(params).get("host") or hostname
    if not host:
        raise InvalidDatabaseUrl(setting, "it has no host name")
    port = _parse_port(port_text or dict(params).get("port") or "5432", setting)
    user = unquote(parts.username or "") or dict(params).get("user", "")
    if not user:
        raise InvalidDatabaseUrl(setting, "it has no user name (postgresql://USER:PASSWORD@HOST/DB)")
    database = unquote(parts.path.lstrip("/")) or dict(params).get("dbname", "") or user
    password = unquote(parts.password) if parts.password is not None else dict(params).get("password")
    sslmode = dict(params).get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise InvalidDatabaseUrl(setting, f"sslmode={sslmode!r} is not one of {', '.join(SSLMODES)}")
    kept = tuple((k, v) for k, v in params if k not in {"host", "port", "user", "password", "dbname"})
    return DatabaseUrl(host=host, port=port, user=user, database=database, password=password, params=kept)


def _port_text(netloc: str) -> str:
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport.partition("]")[2].removeprefix(":")
    return hostport.partition(":")[2]


def _parse_port(text: str, setting: str) -> int:
    try:
        return parse_port("port", text)
    except SettingsError:
        raise InvalidDatabaseUrl(setting, f"port {text!r} is not a number between 1 and 65535") from None


def _parse_params(query: str, setting: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise InvalidDatabaseUrl(setting, "the query string (after ?) is malformed") from _without_text(exc)
    for key, _ in pairs:
        if key not in KNOWN_PARAMS:
            raise InvalidDatabaseUrl(
                setting, f"unknown parameter {key!r}; known: {', '.join(sorted(KNOWN_PARAMS))}"
            )
    return tuple(pairs)


def _without_text(exc: Exception) -> Exception:
    # urllib's messages can quote the netloc, password included; keep only the type.
    return type(exc)("details withheld: they may contain the password")
