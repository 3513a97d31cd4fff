"""What the application does to its data, in SQL, on a database our migrations made and on one
its own drizzle migrations made: both must behave the same."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import Database

PARENT = "00000000-0000-0000-0000-0000000000a1"
FORK = "00000000-0000-0000-0000-0000000000b2"


@pytest.fixture(params=["migrated", "app_current"])
def db(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue(request.param)
    return database


def add_context_with_messages(db: Database, context_id: str, messages: int) -> None:
    db.psql(
        f"INSERT INTO contexts (id, name, latest_version, message_count) "
        f"VALUES ('{context_id}', 'ctx', {messages}, {messages}); "
        "INSERT INTO messages (context_id, version, role, content) "
        f"SELECT '{context_id}', v, 'user', 'm' || v FROM generate_series(1, {messages}) v"
    )


def rejected(db: Database, sql: str) -> str:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        db.psql(sql)
    return str(failed.value.stderr)


def test_hard_deleting_a_forked_parent_keeps_the_fork_with_its_version(db: Database) -> None:
    add_context_with_messages(db, PARENT, 2)
    db.psql(f"INSERT INTO contexts (id, parent_id, fork_version) VALUES ('{FORK}', '{PARENT}', 2)")
    db.psql(f"DELETE FROM contexts WHERE id = '{PARENT}'")
    fork = (
        f"SELECT coalesce(parent_id::text, 'null') || '|' || fork_version FROM contexts WHERE id = '{FORK}'"
    )
    assert db.psql(fork) == "null|2"


def test_soft_deleting_a_context_keeps_it_and_its_messages_out_of_live_listings(db: Database) -> None:
    add_context_with_messages(db, PARENT, 3)
    db.psql(f"UPDATE contexts SET deleted_at = now() WHERE id = '{PARENT}'")
    db.psql(f"UPDATE messages SET deleted_at = now() WHERE context_id = '{PARENT}' AND version = 3")
    assert db.psql("SELECT count(*) FROM contexts WHERE deleted_at IS NULL") == "0"
    assert db.psql(f"SELECT count(*) FROM contexts WHERE id = '{PARENT}'") == "1"
    assert (
        db.psql(f"SELECT count(*) FROM messages WHERE context_id = '{PARENT}' AND deleted_at IS NULL") == "2"
    )


def test_deleting_a_context_deletes_its_messages(db: Database) -> None:
    add_context_with_messages(db, PARENT, 3)
    db.psql(f"DELETE FROM contexts WHERE id = '{PARENT}'")
    assert db.psql("SELECT count(*) FROM messages") == "0"


def test_an_embedding_of_the_wrong_dimension_is_rejected(db: Database) -> None:
    add_context_with_messages(db, PARENT, 0)
    error = rejected(
        db,
        "INSERT INTO messages (context_id, version, role, content, embedding) "
        f"VALUES ('{PARENT}', 1, 'user', 'x', '[1,2,3]')",
    )
    assert "expected 1536 dimensions, not 3" in error
    db.psql(
        "INSERT INTO messages (context_id, version, role, content, embedding) "
        f"VALUES ('{PARENT}', 1, 'user', 'x', array_fill(0.5, ARRAY[1536])::vector)"
    )


def test_an_unknown_role_is_rejected(db: Database) -> None:
    add_context_with_messages(db, PARENT, 0)
    error = rejected(
        db, f"INSERT INTO messages (context_id, version, role, content) VALUES ('{PARENT}', 1, 'bogus', 'x')"
    )
    assert 'invalid input value for enum message_role: "bogus"' in error
    for role in ("user", "assistant", "system", "tool"):
        db.psql(
            "INSERT INTO messages (context_id, version, role, content) "
            f"SELECT '{PARENT}', coalesce(max(version), 0) + 1, '{role}', 'x' FROM messages"
        )
