"""The database settings both programs read from the environment."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pgconn.connect import ssl_option
from pgconn.dsn import NAME_MAX_BYTES, DatabaseUrl, InvalidDatabaseUrl, parse_database_url
from pgconn.options import Option, SettingsError, parse_text
from pgconn.pooler import PoolerSetting

# Read together by `DatabaseSettings.from_env`; in the table for flags, help and YAML keys.
DATABASE_URL: Final = Option(
    "database_url", "DATABASE_URL", None, None, parse_text, "the application's PostgreSQL URL (required)"
)
DATABASE_URL_UNPOOLED: Final = Option(
    "database_url_unpooled",
    "DATABASE_URL_UNPOOLED",
    None,
    None,
    parse_text,
    "direct URL, preferred for locks",
)
DATABASE_POOLED: Final = Option(
    "pooled",
    "DATABASE_POOLED",
    "--pooled",
    "auto",
    parse_text,
    "auto, true or false: override pooler detection",
    "MODE",
)
MIGRATIONS_DIR: Final = Option(
    "migrations_dir",
    "MIGRATIONS_DIR",
    "--migrations",
    None,
    parse_text,
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
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        program: str,
        migrations_dir: str | None = None,
    ) -> DatabaseSettings:
        """Build from `DATABASE_URL`, `DATABASE_URL_UNPOOLED`, `DATABASE_POOLED`, `MIGRATIONS_DIR`."""
        raw_url = env.get("DATABASE_URL", "")
        if not raw_url.strip():
            raise SettingsError(
                "DATABASE_URL is not set: set it to postgresql://USER:PASSWORD@HOST:5432/DB "
                "(in Kubernetes, from the Secret's DATABASE_URL key)"
            )
        try:
            url = parse_database_url(raw_url, "DATABASE_URL")
            raw_unpooled = env.get("DATABASE_URL_UNPOOLED", "").strip()
            unpooled = parse_database_url(raw_unpooled, "DATABASE_URL_UNPOOLED") if raw_unpooled else None
            pooled = PoolerSetting.parse(env.get("DATABASE_POOLED", "auto"))
        except (InvalidDatabaseUrl, ValueError) as exc:
            raise SettingsError(str(exc)) from None
        for checked in (url, unpooled):
            if checked is not None:
                ssl_option(checked)  # a missing sslrootcert is exit 2 at start, not a retried "network error"
        directory = migrations_dir or env.get("MIGRATIONS_DIR") or None
        return cls(
            url=url,
            unpooled_url=unpooled,
            pooled=pooled,
            migrations_dir=Path(directory) if directory else None,
            application_name=application_name(program, env),
        )


def application_name(program: str, env: Mapping[str, str]) -> str:
    """`kata-migrate@<pod>`: who holds a lock or applied a migration, as pg_stat_activity shows."""
    who = env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()
    # PostgreSQL's limit is in bytes: cut the UTF-8 form, never inside a character. A byte of the
    # environment that is not UTF-8 (a lone surrogate here) becomes "?", not an exception.
    return f"{program}@{who}".encode(errors="replace")[:NAME_MAX_BYTES].decode("utf-8", errors="ignore")
