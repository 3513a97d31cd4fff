"""Read the live schema from PostgreSQL's catalogs in one query.

The probe runs this, so it is one statement (one implicit transaction), it reads only
pg_catalog (which every role may read, unlike the tables' data), and it looks only at the
schema the migrations and the ledger live in (`public`): a `drizzle` schema or anything else
beside it is not ours to judge. Not `current_schema()`: with the default search_path
`"$user", public`, a role named like a schema (a probe role `kata`, a schema `kata`) would read
that schema instead.
"""

from __future__ import annotations

import json
from typing import Final

import asyncpg

from schema.ledger import SCHEMA
from schema.model import ORDERINGS, Schema, schema_from_json

# The schema read: the ledger's, where the migrations create their objects.
NAMESPACE: Final = SCHEMA

# Extensions are database-wide; plpgsql is always there and nothing of ours depends on it.
# Indexes that back a PRIMARY KEY, UNIQUE or EXCLUDE constraint are described by that
# constraint, so they are left out of `indexes`. PostgreSQL 18 also lists NOT NULL as
# constraints (contype 'n'): nullability is read from the columns instead.
# The deparsing functions (pg_get_constraintdef, format_type, ...) qualify a name that the
# session's search_path does not resolve to the same object: a role's "$user" schema holding a
# `contexts` would turn `REFERENCES contexts(id)` into `public.contexts(id)`. So the query first
# sets search_path to the schema it reads, for its own implicit transaction only (is_local).
# A type of an extension installed in another schema (pgvector in `extensions`, as on Supabase)
# is still printed with that schema (`extensions.vector(1536)`), even with the schema on the path
# when the role lacks USAGE on it: the schema is cut off, so such types compare by name.
# An index key's sort order is pg_index.indoption: bit 1 DESC, bit 2 NULLS FIRST.
ORDERING_CASE: Final = " ".join(f"WHEN {bits} THEN '{words}'" for bits, words in enumerate(ORDERINGS))
LIVE_SCHEMA_QUERY: Final = """
WITH path AS MATERIALIZED (SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident($1), true)),
ns AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)
SELECT json_build_object(
  'extensions', (
    SELECT coalesce(json_agg(json_build_object('name', extname, 'version', extversion)), '[]')
    FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'),
  'enums', (
    SELECT coalesce(json_agg(json_build_object('name', t.typname, 'labels', (
      SELECT coalesce(json_agg(e.enumlabel ORDER BY e.enumsortorder), '[]')
      FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid))), '[]')
    FROM pg_catalog.pg_type t
    WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype = 'e'),
  'tables', (
    SELECT coalesce(json_agg(json_build_object('name', c.relname, 'columns', (
      SELECT coalesce(json_agg(json_build_object(
        'name', a.attname,
        'type', CASE WHEN pg_catalog.strpos(f.type, '.') = 0 THEN f.type ELSE coalesce((
          SELECT pg_catalog.substr(f.type, pg_catalog.length(pg_catalog.quote_ident(n.nspname)) + 2)
          FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
          WHERE ty.oid = a.atttypid AND n.oid IN (SELECT extnamespace FROM pg_catalog.pg_extension)
            AND pg_catalog.starts_with(f.type, pg_catalog.quote_ident(n.nspname) || '.')), f.type) END,
        'not_null', a.attnotnull,
        'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid))), '[]')
      FROM pg_catalog.pg_attribute a
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      CROSS JOIN LATERAL (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type) f
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))), '[]')
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind IN ('r', 'p')),
  'constraints', (
    SELECT coalesce(json_agg(json_build_object(
      'table', c.relname,
      'name', k.conname,
      'kind', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key'
                             WHEN 'u' THEN 'unique constraint' ELSE 'check constraint' END,
      'definition', regexp_replace(pg_catalog.pg_get_constraintdef(k.oid), ' NOT VALID$', ''),
      'validated', k.convalidated)), '[]')
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
    WHERE c.relnamespace = (SELECT oid FROM ns) AND k.contype IN ('p', 'f', 'u', 'c')),
  'indexes', (
    SELECT coalesce(json_agg(json_build_object(
      'table', c.relname,
      'name', ic.relname,
      'method', am.amname,
      'keys', (SELECT json_agg(pg_catalog.pg_get_indexdef(i.indexrelid, n, true) ORDER BY n)
               FROM generate_series(1, i.indnkeyatts) n),
      'opclasses', (SELECT json_agg(o.opcname ORDER BY k.n)
                    FROM unnest(i.indclass::oid[]) WITH ORDINALITY k(oid, n)
                    JOIN pg_catalog.pg_opclass o ON o.oid = k.oid),
      'include', (SELECT coalesce(json_agg(pg_catalog.pg_get_indexdef(i.indexrelid, n, true)
                                           ORDER BY n), '[]')
                  FROM generate_series(i.indnkeyatts + 1, i.indnatts) n),
      'ordering', (SELECT json_agg(CASE i.indoption[n - 1] & 3 {ordering} END ORDER BY n)
                   FROM generate_series(1, i.indnkeyatts) n),
      'reloptions', coalesce(pg_catalog.to_json(ic.reloptions), '[]'),
      'unique', i.indisunique,
      'predicate', pg_catalog.pg_get_expr(i.indpred, i.indrelid, true),
      'valid', i.indisvalid AND i.indisready)), '[]')
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
    WHERE c.relnamespace = (SELECT oid FROM ns)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint b
                      WHERE b.conindid = i.indexrelid AND b.contype IN ('p', 'u', 'x')))
)::text
FROM path
""".replace("{ordering}", ORDERING_CASE)


async def read_live_schema(conn: asyncpg.Connection, namespace: str = NAMESPACE) -> Schema:
    """The live schema of `namespace` (`public`): one query, catalog views only, no table data."""
    document: str = await conn.fetchval(LIVE_SCHEMA_QUERY, namespace)
    return schema_from_json(json.loads(document))
