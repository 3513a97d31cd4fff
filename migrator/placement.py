"""Where a migration's objects land: the schema the ledger lives in (`public`), whatever the role's
default search_path, plus the schema that holds pgvector when it is another one (Supabase installs
extensions in `extensions`), so that `vector(1536)` and `vector_cosine_ops` still resolve.

With PostgreSQL's default `"$user", public`, an owner role with a schema of its own name
(`CREATE SCHEMA own AUTHORIZATION own`) would create every table in `own`, while the ledger, the
grants and the probe look in `public`.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from schema.live import NAMESPACE
from schema.pgvector import EXTENSION

# The ledger's schema first (unqualified CREATEs land there), then pgvector's when elsewhere;
# set for the session and returned, in one round trip.
PIN_QUERY: Final = """
SELECT pg_catalog.set_config('search_path', (
  SELECT pg_catalog.string_agg(pg_catalog.quote_ident(nspname), ', ' ORDER BY place)
  FROM (
    SELECT $1::text AS nspname, 0 AS place
    UNION ALL
    SELECT n.nspname, 1
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = $2 AND n.nspname <> $1
  ) AS path), false)
"""


async def pin_search_path(conn: asyncpg.Connection) -> str:
    """Set the session's search_path to where the migrations' objects belong, and return it: each
    file sets it again for itself, so a file's own `SET search_path` cannot move the next file."""
    return str(await conn.fetchval(PIN_QUERY, NAMESPACE, EXTENSION))
