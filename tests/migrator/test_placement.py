"""Where `up` puts the schema: in `public`, where the ledger, the grants and the probe look, whatever
the role's default search_path (`"$user", public`, with a schema named like the owner role), with
pgvector's types resolved from whichever schema holds the extension; and what `up` says when the
catalog after applying is not what the snapshot of the new version promises."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from localpg.throwaway import SUPERUSER
from schema.model import Column, Index, Schema, Table
from schema.snapshot import dumps_snapshot, snapshot_path
from tests.conftest import Database, Roles
from tests.migrator.conftest import ledger, migrator_env, run_inprocess

Files = Callable[[dict[str, str | bytes]], Path]

IN_SCHEMA = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{0}'"
)
TYPES_IN_SCHEMA = (
    "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE n.nspname = '{0}' AND t.typtype = 'e'"
)
EXTENSION_SCHEMA = "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'vector'"


def test_the_schema_lands_in_public_when_the_owner_role_has_a_schema_of_its_own(roles: Roles) -> None:
    db = roles.database
    db.psql(f'CREATE SCHEMA "{roles.owner}" AUTHORIZATION "{roles.owner}"')
    env = migrator_env(roles.url(roles.owner), MIGRATOR_APP_ROLE=roles.app, MIGRATOR_PROBE_ROLE=roles.probe)
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert db.psql(IN_SCHEMA.format(roles.owner)) == "0"
    assert db.psql(TYPES_IN_SCHEMA.format(roles.owner)) == "0"
    for table in ("contexts", "messages"):
        assert db.psql(f"SELECT to_regclass('public.{table}') IS NOT NULL") == "t"
    assert db.psql("SELECT to_regtype('public.message_role') IS NOT NULL") == "t"
    # The probe's role, as the `wait-for-schema` init container and the sidecar run it.
    for command in ("verify", "wait"):
        checked = run_inprocess([command], migrator_env(roles.url(roles.probe)))
        assert checked.code == 0, (command, checked.stderr)


def test_the_extension_the_preflight_creates_lands_in_public_too(database: Database) -> None:
    database.psql(f'CREATE SCHEMA "{SUPERUSER}"')  # first in the superuser's default search_path
    outcome = run_inprocess(["up"], migrator_env(database.url))
    assert outcome.code == 0, outcome.stderr
    assert database.psql(EXTENSION_SCHEMA) == "public"
    assert database.psql(IN_SCHEMA.format(SUPERUSER)) == "0"
    assert run_inprocess(["verify"], migrator_env(database.url)).code == 0


def test_a_files_own_search_path_does_not_move_the_next_file(
    database: Database, write_migrations: Files
) -> None:
    # A plain SET inside the file's transaction outlives its COMMIT: the session keeps it.
    directory = write_migrations(
        {
            "0001_side.sql": "CREATE SCHEMA side;\nSET search_path = side;\nCREATE TABLE side_t (id int);\n",
            "0002_main.sql": "CREATE TABLE main_table (id int);\n",
            "0003_index.sql": "-- migrate: no-transaction\n"
            "CREATE INDEX CONCURRENTLY main_idx ON main_table (id);\n",
        }
    )
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 0, outcome.stderr
    assert database.psql("SELECT to_regclass('side.side_t') IS NOT NULL") == "t"  # as the file said
    assert database.psql("SELECT to_regclass('public.main_table') IS NOT NULL") == "t"
    assert database.psql("SELECT to_regclass('public.main_idx') IS NOT NULL") == "t"


def install_pgvector_in_schema_extensions(database: Database) -> None:
    """As Supabase does: pgvector's types and operator classes live in schema `extensions`."""
    database.psql("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")


def test_pgvector_in_schema_extensions_resolves_for_the_files(
    database: Database, write_migrations: Files
) -> None:
    install_pgvector_in_schema_extensions(database)
    directory = write_migrations(
        {
            "0001_items.sql": "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3));\n",
            "0002_items_hnsw.sql": "-- migrate: no-transaction\n"
            "CREATE INDEX CONCURRENTLY items_embedding_idx ON items\n"
            "    USING hnsw (embedding vector_cosine_ops);\n",
        }
    )
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 0, outcome.stderr
    assert database.psql(EXTENSION_SCHEMA) == "extensions"  # not installed a second time
    column = "SELECT atttypid::regtype FROM pg_attribute WHERE attrelid = 'public.items'::regclass"
    embedding = database.psql(f"SET search_path = public; {column} AND attname = 'embedding'")
    assert embedding == "extensions.vector"
    assert database.psql("SELECT to_regclass('public.items_embedding_idx') IS NOT NULL") == "t"


def test_pgvector_in_schema_extensions_then_up_and_verify_exit_0(database: Database) -> None:
    install_pgvector_in_schema_extensions(database)
    env = migrator_env(database.url)
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 0, outcome.stderr
    assert run_inprocess(["verify"], env).code == 0


def promise(directory: Path, schema: Schema) -> None:
    """A hand-written snapshot 0001 for the directory's one migration."""
    path = snapshot_path(directory, 1)
    path.parent.mkdir()
    path.write_text(dumps_snapshot(1, schema))


ID = Column("id", "integer", False, None)


@pytest.mark.parametrize(
    ("promised", "named"),
    [
        pytest.param(
            Table("a", (ID, Column("note", "text", False, None))),
            "breaking: column a.note is missing (expected text)",
            id="breaking",
        ),
        pytest.param(
            Index("a", "a_id_idx", "btree", ("id",), ("int4_ops",), False),
            "degraded: index a_id_idx is missing",
            id="degraded",
        ),
    ],
)
def test_up_exits_6_when_the_schema_it_applied_is_not_what_the_snapshot_promises(
    database: Database, write_migrations: Files, promised: Table | Index, named: str
) -> None:
    directory = write_migrations({"0001_a.sql": "CREATE TABLE a (id int);\n"})
    table = promised if isinstance(promised, Table) else Table("a", (ID,))
    promise(directory, Schema(tables=(table,), indexes=(promised,) if isinstance(promised, Index) else ()))
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 6, outcome.stderr
    assert outcome.events()[-1]["event"] == "applied_schema_drift"
    message = outcome.final_message
    assert message.startswith("drift after applying: 0001_a.sql applied and recorded, but the live"), message
    assert named in message
    assert ledger(database) == ["1|applied"]
