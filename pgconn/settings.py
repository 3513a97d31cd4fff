"""The database settings both programs read: their options, and the frozen object built from them."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pgconn.config import Option, SettingsError, Sources
from pgconn.connect import with_tls
from pgconn.dsn import NAME_MAX_BYTES, DatabaseUrl, InvalidDatabaseUrl, parse_database_url
from pgconn.pooler import PoolerSetting


def parse_url(name: str, text: str) -> DatabaseUrl:
    """A PostgreSQL URL with its TLS context built: a certificate file that cannot be used is a
    setting error at start (exit 2), not a "network error" retried on every connection."""
    try:
        return with_tls(parse_database_url(text, name))
    except InvalidDatabaseUrl as exc:
        raise SettingsError(str(exc)) from None


def parse_directory(name: str, text: str) -> Path | None:
    """A folder; blank (`--migrations ""` as well as an empty variable) is the packaged one, never
    the current directory that `Path("")` would be."""
    return Path(text.strip()) if text.strip() else None


DATABASE_URL: Final = Option(
    "database_url",
    "DATABASE_URL",
    None,
    None,
    parse_url,
    "set it to postgresql://USER:PASSWORD@HOST:5432/DB (in Kubernetes, from the Secret's DATABASE_URL key)",
)
DATABASE_URL_UNPOOLED: Final = Option(
    "database_url_unpooled",
    "DATABASE_URL_UNPOOLED",
    None,
    None,
    parse_url,
    "direct URL, preferred for locks",
)
# One option for both programs: whether DATABASE_URL goes through a pooler.
DATABASE_POOLED: Final = Option(
    "pooled",
    "DATABASE_POOLED",
    "--pooled",
    "auto",
    PoolerSetting.parse,
    "auto, true or false: whether DATABASE_URL goes through a pooler (auto: a -pooler host)",
    "MODE",
)
MIGRATIONS_DIR: Final = Option(
    "migrations_dir",
    "MIGRATIONS_DIR",
    "--migrations",
    None,
    parse_directory,
    "folder of NNNN_slug.sql files (default: packaged)",
    "DIR",
)
DATABASE_OPTIONS: Final[tuple[Option[Any], ...]] = (
    DATABASE_URL,
    DATABASE_URL_UNPOOLED,
    DATABASE_POOLED,
    MIGRATIONS_DIR,
)


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is and how to reach it. The repr never shows a password."""

    url: DatabaseUrl
    unpooled_url: DatabaseUrl | None
    pooled: PoolerSetting
    migrations_dir: Path | None  # None: the files packaged with the program
    application_name: str = field(default="kata")

    @classmethod
    def from_sources(cls, sources: Sources, *, program: str) -> DatabaseSettings:
        """Each of `DATABASE_OPTIONS` from the first source that sets it; the connection's name
        from the environment alone (`POD_NAME`, set by Kubernetes, is no setting of ours)."""
        return cls(
            url=sources.value(DATABASE_URL),
            unpooled_url=sources.optional(DATABASE_URL_UNPOOLED),
            pooled=sources.value(DATABASE_POOLED),
            migrations_dir=sources.optional(MIGRATIONS_DIR),
            application_name=application_name(program, sources.env),
        )


def application_name(program: str, env: Mapping[str, str]) -> str:
    """`kata-migrate@<pod>`: who holds a lock or applied a migration, as pg_stat_activity shows."""
    # A blank one is unset; any other is kept as it is (its control characters are escaped in logs).
    named = (env.get("POD_NAME"), env.get("HOSTNAME"))
    who = next((name for name in named if name and name.strip()), socket.gethostname())
    # PostgreSQL's limit is in bytes: cut the UTF-8 form, never inside a character. A byte of the
    # environment that is not UTF-8 (a lone surrogate here) becomes "?", not an exception.
    return f"{program}@{who}".encode(errors="replace")[:NAME_MAX_BYTES].decode("utf-8", errors="ignore")
