"""Parse a PostgreSQL URL into its parts, and show it without its password.

The parser finds the password's place before anything else and never quotes text from it: an
error says which rule the URL breaks, not what it contains, so a password with a raw '/' or '@'
cannot leak through "port '...' is not a number"."""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import parse_qsl, quote, unquote

from pgconn.config import SettingsError, parse_port

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
# PostgreSQL keeps NAMEDATALEN - 1 bytes of a user, database or application name and cuts the rest
# silently (or, for 10 kB and more, drops the connection): refuse instead of connecting as someone else.
NAME_MAX_BYTES: Final = 63
HOST_MAX: Final = 253  # DNS: 253 characters in all, 63 per label
CONNECT_TIMEOUT_MAX: Final = 3600
PERCENT_ENCODE: Final = (
    "reserved characters in the user name or password must be percent-encoded: "
    "'@' as %40, '/' as %2F, '?' as %3F, '#' as %23, '%' as %25 (and ':' in the user name as %3A)"
)
DNS_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")


class InvalidDatabaseUrl(ValueError):
    """A database URL that cannot be used; the message never contains the password."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting} is not a usable PostgreSQL URL: {problem}")


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed PostgreSQL URL. `repr`, `str` and `redacted()` never show the password. `tls` is
    asyncpg's `ssl=` for it, built once by `pgconn.connect.with_tls` (None until then)."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()
    tls: ssl.SSLContext | str | None = field(default=None, repr=False, compare=False)

    @property
    def sslmode(self) -> str:
        return self.param("sslmode") or "prefer"

    @property
    def connect_timeout(self) -> float | None:
        """`?connect_timeout=N` in seconds (validated when parsed); None when absent or 0."""
        text = self.param("connect_timeout")
        return float(text) if text and int(text) > 0 else None

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

    __str__ = redacted


@dataclass(frozen=True)
class _Parts:
    """The URL cut at its delimiters; `userinfo` holds the password and is never quoted."""

    userinfo: str | None = field(repr=False)
    hostport: str
    path: str
    query: str


def parse_database_url(text: str, setting: str = "DATABASE_URL") -> DatabaseUrl:
    """Parse `postgres[ql]://user:password@host:port/db?params`; raise InvalidDatabaseUrl."""
    parts = _split(text.strip(), setting)
    params = _parse_params(parts.query, setting)
    given = dict(params)
    if "," in parts.hostport:
        raise InvalidDatabaseUrl(setting, "several hosts in one URL are not supported; give one host")
    host_text, port_text = _host_and_port(parts.hostport, setting)
    host = _parse_host(given.get("host") or host_text, setting)
    port = _parse_port(port_text or given.get("port") or "5432", setting)
    user_text, colon, password_text = (parts.userinfo or "").partition(":")
    user = _decoded(user_text, "the user name", setting) or _utf8(
        given.get("user", ""), "the user name", setting
    )
    if not user:
        raise InvalidDatabaseUrl(setting, "it has no user name (postgresql://USER:PASSWORD@HOST/DB)")
    database = unquote(parts.path) or given.get("dbname", "") or user
    password = (
        _decoded(password_text, "the password", setting)
        if colon
        else _utf8(given.get("password"), "the password", setting)
    )
    _check_name_length("the user name", user, setting)
    _check_name_length("the database name", database, setting)
    _check_name_length("application_name", given.get("application_name", ""), setting)
    _check_sslmode(given.get("sslmode"), setting)
    _check_connect_timeout(given.get("connect_timeout"), setting)
    kept = tuple((k, v) for k, v in params if k not in {"host", "port", "user", "password", "dbname"})
    return DatabaseUrl(host=host, port=port, user=user, database=database, password=password, params=kept)


def _decoded(text: str, what: str, setting: str) -> str:
    """Percent-decoded `text`; bytes that are not UTF-8 are refused rather than replaced."""
    try:
        return _utf8(unquote(text, errors="strict"), what, setting) or ""
    except UnicodeDecodeError:
        raise _not_utf8(what, setting) from None


def _utf8(value: str | None, what: str, setting: str) -> str | None:
    """`value` unless it holds a byte that is not UTF-8 (a surrogate, as the environment decodes
    one): the server compares UTF-8 text, and the error must never quote the value."""
    if value is not None and any("\ud800" <= c <= "\udfff" for c in value):
        raise _not_utf8(what, setting)
    return value


def _not_utf8(what: str, setting: str) -> InvalidDatabaseUrl:
    return InvalidDatabaseUrl(
        setting,
        f"{what} is not valid UTF-8 text (a raw or percent-encoded byte outside UTF-8); "
        "write it in UTF-8, percent-encoded if it holds reserved characters",
    )


def _split(text: str, setting: str) -> _Parts:
    """Cut at '://', the one '@', then '/' and '?'. Refuses the shapes where a password holding a
    reserved character would be misread as a host, port or database (and echoed as one)."""
    if not text:
        raise InvalidDatabaseUrl(setting, "it is empty; set it to postgresql://USER:PASSWORD@HOST:5432/DB")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise InvalidDatabaseUrl(
            setting, "it must start with postgresql:// or postgres:// (key=value strings are not supported)"
        )
    if "#" in rest:
        raise InvalidDatabaseUrl(setting, f"it contains '#', which ends a URL early; {PERCENT_ENCODE}")
    if rest.count("@") > 1:
        raise InvalidDatabaseUrl(
            setting,
            f"it contains more than one '@' (one separates USER:PASSWORD from the host); {PERCENT_ENCODE}",
        )
    userinfo, at, after = rest.rpartition("@")
    if at and any(char in userinfo for char in "/?"):
        raise InvalidDatabaseUrl(
            setting, f"a '/' or '?' comes before the '@' that ends USER:PASSWORD; {PERCENT_ENCODE}"
        )
    before_query, _, query = after.partition("?")
    hostport, _, path = before_query.partition("/")
    return _Parts(userinfo if at else None, hostport, path, query)


def _host_and_port(hostport: str, setting: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise InvalidDatabaseUrl(setting, "the IPv6 address in [brackets] is malformed")
        return host, port[1:]
    host, _, port = hostport.partition(":")
    if ":" in port:
        raise InvalidDatabaseUrl(setting, "the host has more than one ':'; put an IPv6 address in [brackets]")
    return unquote(host), port


def _parse_host(host: str, setting: str) -> str:
    """A DNS name, an IP address, or a Unix socket directory (a path from `?host=`)."""
    if not host:
        raise InvalidDatabaseUrl(setting, "it has no host name")
    problem = None if host.startswith("/") else host_problem(host)
    if problem:
        raise InvalidDatabaseUrl(setting, problem)
    return host


def host_problem(host: str) -> str | None:
    """What is wrong with a host name or IP address, or None. Checked here because the resolver
    fails later with a bare UnicodeError on a 64-character label, and '999.1.1.1' is a 'name'."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.rstrip(".").split(".")
    if (
        not ascii_name
        or len(ascii_name) > HOST_MAX
        or not all(DNS_LABEL.fullmatch(label) for label in labels)
    ):
        return (
            f"the host name ({len(host)} characters) is not a valid DNS name or IP address: letters, digits "
            f"and '-' in dot-separated labels of at most 63 characters, {HOST_MAX} in all"
        )
    if all(label.isdigit() for label in labels):
        return f"the host {host!r} looks like an IPv4 address but is not one (each part 0-255)"
    return None


def _parse_port(text: str, setting: str) -> int:
    try:
        return parse_port("port", text)
    except SettingsError:
        # The port text is never quoted: in a URL whose password holds a raw ':' or '/',
        # what stands where the port should be can be part of the password.
        raise InvalidDatabaseUrl(
            setting, f"the port is not a number between 1 and 65535; {PERCENT_ENCODE}"
        ) from None


def _check_name_length(what: str, name: str, setting: str) -> None:
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        raise InvalidDatabaseUrl(
            setting,
            f"{what} is {len(name.encode('utf-8'))} bytes long; PostgreSQL allows {NAME_MAX_BYTES} "
            "(NAMEDATALEN - 1) and would cut it short",
        )


def _check_sslmode(sslmode: str | None, setting: str) -> None:
    if sslmode is not None and sslmode not in SSLMODES:
        raise InvalidDatabaseUrl(setting, f"sslmode={sslmode[:20]!r} is not one of {', '.join(SSLMODES)}")


def _check_connect_timeout(text: str | None, setting: str) -> None:
    """libpq's whole seconds, 0 meaning "no limit of its own" (the program's timeout then applies)."""
    if text is not None and not (re.fullmatch(r"[0-9]{1,4}", text) and int(text) <= CONNECT_TIMEOUT_MAX):
        raise InvalidDatabaseUrl(
            setting, f"connect_timeout must be a whole number of seconds from 0 to {CONNECT_TIMEOUT_MAX}"
        )


def _parse_params(query: str, setting: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidDatabaseUrl(
            setting, "the query string (after ?) is malformed: use ?key=value&key=value"
        ) from None
    # A raw '&' in `?password=` makes the rest of the password look like a key: quote no key then.
    has_password = any(key == "password" for key, _ in pairs)
    for key, _ in pairs:
        if key not in KNOWN_PARAMS:
            named = "an unknown parameter" if has_password else f"unknown parameter {key[:40]!r}"
            raise InvalidDatabaseUrl(
                setting,
                f"{named}; known: {', '.join(sorted(KNOWN_PARAMS))} ('&' in a password must be %26)",
            )
    return tuple(pairs)
