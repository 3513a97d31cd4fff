"""The rows behind a failed VALIDATE CONSTRAINT: a query the operator can run to find them."""

from __future__ import annotations

import contextlib
from typing import Final

import asyncpg

CHECK_VIOLATION: Final = "23514"

# The CHECK expression and the columns worth showing: the primary key, then the checked columns.
CONSTRAINT_SQL: Final = """
SELECT format('%I.%I', n.nspname, r.relname) AS relation,
       pg_get_expr(c.conbin, c.conrelid) AS expression,
       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY array_position(keys.cols, a.attnum))
          FROM (SELECT coalesce(p.conkey, '{}') || c.conkey AS cols) AS keys
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (keys.cols)) AS columns
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
LEFT JOIN pg_constraint p ON p.conrelid = c.conrelid AND p.contype = 'p'
WHERE c.contype = 'c' AND c.conname = $1 AND n.nspname = $2 AND r.relname = $3
"""


def is_failed_validation(exc: asyncpg.PostgresError, statement: str) -> bool:
    """A CHECK violation raised by `ALTER TABLE ... VALIDATE CONSTRAINT`: existing rows break it."""
    return exc.sqlstate == CHECK_VIOLATION and "VALIDATE CONSTRAINT" in " ".join(statement.upper().split())


async def rows_query(conn: asyncpg.Connection, exc: asyncpg.PostgresError) -> str | None:
    """`SELECT <key and checked columns> FROM <table> WHERE NOT (<check>)`, read from the catalog
    (the server names the constraint, schema and table in the error's fields); None when it
    cannot be read, so the failure is still reported."""
    names = (getattr(exc, "constraint_name", None), getattr(exc, "schema_name", None))
    table = getattr(exc, "table_name", None)
    if not all((*names, table)):
        return None
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        row = await conn.fetchrow(CONSTRAINT_SQL, *names, table)
        if row is not None:
            return f"SELECT {row['columns'] or '*'} FROM {row['relation']} WHERE NOT {row['expression']}"
    return None
