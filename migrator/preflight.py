"""Before any DDL: make sure pgvector is available, installed (or installable by us) and new enough."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.database_errors import PgvectorUnavailable
from schema.pgvector import (
    EXTENSION,
    create_statement,
    install_advice,
    is_too_old,
    needed_text,
    update_advice,
)

CREATE_STATEMENT: Final = create_statement()


@dataclass(frozen=True)
class PgvectorStatus:
    """What the preflight found and did."""

    version: str
    created: bool


async def ensure_pgvector(conn: asyncpg.Connection) -> PgvectorStatus:
    """Install pgvector when missing and allowed; PgvectorUnavailable (exit 4) otherwise."""
    database = await conn.fetchval("SELECT current_database()")
    row = await conn.fetchrow(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = $1", EXTENSION
    )
    if row is None:
        server = await conn.fetchval("SELECT current_setting('server_version_num')::int / 10000")
        raise PgvectorUnavailable(
            f"pgvector is not available on this PostgreSQL server (no '{EXTENSION}' in "
            f"pg_available_extensions); install it on the server (e.g. Debian: apt install "
            f"postgresql-{server}-pgvector; a managed service: enable it, on Neon run `{CREATE_STATEMENT}` "
            f"in the SQL editor for database {database}), then run again. Nothing was changed"
        )
    installed = row["installed_version"]
    if installed is not None:
        if is_too_old(installed):
            raise PgvectorUnavailable(
                f"pgvector {installed} is installed in database {database} but {needed_text()}; "
                f"{update_advice(database)} (the server offers "
                f"{row['default_version']}), then run again. Nothing was changed"
            )
        return PgvectorStatus(version=installed, created=False)
    available = row["default_version"]
    if is_too_old(available):
        raise PgvectorUnavailable(
            f"the server offers pgvector {available} but {needed_text()}; "
            "upgrade the pgvector package on the server, then run again. Nothing was changed"
        )
    try:
        await conn.execute(CREATE_STATEMENT)
    except asyncpg.InsufficientPrivilegeError:
        role = await conn.fetchval("SELECT current_user")
        raise PgvectorUnavailable(
            f"pgvector {available} is available but not installed in database {database}, and role {role} "
            f"may not create it; {install_advice(f'database {database}')}, then run again. "
            "Nothing was changed"
        ) from None
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = $1", EXTENSION)
    return PgvectorStatus(version=str(version), created=True)
