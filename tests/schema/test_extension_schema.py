"""pgvector installed in a schema of its own (`extensions`, as on Supabase): the shipped migrations
applied by `kata-migrate up`, then `verify` and the probe's schema check find no drift, although
PostgreSQL prints the column's type as `extensions.vector(1536)` wherever that schema is not on
the reader's search_path (always for a role without USAGE on it, such as the probe's)."""

from __future__ import annotations

import asyncio

import asyncpg

from probe.schema_check import SchemaCheck, SchemaFinding
from schema.catalog import read_catalog
from tests.conftest import Roles
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_inprocess
from tests.schema.conftest import LATEST


def install_pgvector_in_extensions(roles: Roles) -> None:
    """What Supabase does: the extension in schema `extensions`, which the database's search_path
    names and the owner and the application may use; the probe role is given nothing there.
    deploy/roles.sql created it in public: moved before any column uses it."""
    db = roles.database
    db.psql("DROP EXTENSION vector; CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
    db.psql(f'GRANT USAGE ON SCHEMA extensions TO "{roles.owner}", "{roles.app}"')
    db.psql(f'ALTER DATABASE "{db.name}" SET search_path = "$user", public, extensions')


def schema_check(url: str) -> SchemaFinding:
    async def run() -> SchemaFinding:
        conn = await asyncpg.connect(url)
        try:
            return await SchemaCheck(read_catalog(MIGRATIONS)).run(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_pgvector_in_an_extensions_schema_is_no_drift_for_verify_or_the_probe(roles: Roles) -> None:
    install_pgvector_in_extensions(roles)
    env = migrator_env(roles.url(roles.owner), MIGRATOR_APP_ROLE=roles.app, MIGRATOR_PROBE_ROLE=roles.probe)
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    embedding_type_schema = (
        "SELECT n.nspname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE a.attrelid = 'public.messages'::regclass AND a.attname = 'embedding'"
    )
    assert roles.database.psql(embedding_type_schema) == "extensions"
    for _ in range(2):  # every verify after the first up, not only the first
        verified = run_inprocess(["verify"], env)
        assert verified.code == 0, verified.stderr
        assert "schema_verified" in verified.names()
    found = schema_check(roles.url(roles.probe))
    assert (found.version, found.pending, found.drift) == (LATEST, 0, ())
