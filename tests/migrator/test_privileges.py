"""Least privilege on a real PostgreSQL with the three roles of deploy/roles.sql: what `up` grants,
what each role can and cannot do, and exit 10 with the GRANT whenever a verb meets "permission denied"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from migrator import privileges
from tests.conftest import Database, Roles
from tests.migrator.conftest import Outcome, ledger, migrator_env, run_inprocess, start_process, table_exists

Files = Callable[[dict[str, str | bytes]], Path]
LEDGER = "public.kata_schema_migrations"
ALL_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


def owner_up(roles: Roles, *args: str, **env: str) -> Outcome:
    """`up` as the Job runs it: the owner's URL, and the two roles to grant to."""
    settings = {"MIGRATOR_APP_ROLE": roles.app, "MIGRATOR_PROBE_ROLE": roles.probe, **env}
    return run_inprocess(["up", *args], migrator_env(roles.url(roles.owner), **settings))


def held(database: Database, role: str, table: str) -> set[str]:
    """The table privileges `role` has on `table`, as PostgreSQL decides them."""
    checks = ", ".join(f"has_table_privilege('{role}', '{table}', '{p}')" for p in ALL_TABLE_PRIVILEGES)
    answers = database.psql(f"SELECT {checks}").split("|")
    return {p for p, answer in zip(ALL_TABLE_PRIVILEGES, answers, strict=True) if answer == "t"}


async def execute_as(url: str, *statements: str) -> list[str]:
    """Run each statement on one connection; 'ok' or the exception's class name for each."""
    conn = await asyncpg.connect(url)
    results = []
    try:
        for statement in statements:
            try:
                await conn.execute(statement)
                results.append("ok")
            except asyncpg.PostgresError as exc:
                results.append(type(exc).__name__)
    finally:
        await conn.close()
    return results


def test_up_grants_the_app_exactly_dml_and_the_probe_only_the_ledger(roles: Roles) -> None:
    outcome = owner_up(roles)
    assert outcome.code == 0, outcome.stderr
    db = roles.database
    for table in ("public.contexts", "public.messages"):
        assert held(db, roles.app, table) == set(DML), table
        assert held(db, roles.probe, table) == set(), table
    assert held(db, roles.app, LEDGER) == set()
    assert held(db, roles.probe, LEDGER) == {"SELECT"}
    assert db.psql(f"SELECT has_type_privilege('{roles.app}', 'public.message_role', 'USAGE')") == "t"
    granted = [e for e in outcome.events() if e["event"] == "grants_applied"]
    assert granted and "grants_skipped" not in outcome.names()
    assert db.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'contexts'") == roles.owner
    again = owner_up(roles)
    assert again.code == 0 and "grants_applied" not in again.names()  # nothing missing, nothing granted


def test_app_role_writes_rows_and_cannot_change_the_schema(roles: Roles) -> None:
    assert owner_up(roles).code == 0
    results = asyncio.run(
        execute_as(
            roles.url(roles.app),
            "INSERT INTO contexts (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'c')",
            "INSERT INTO messages (context_id, version, role, content, embedding) VALUES "
            "('00000000-0000-0000-0000-000000000001', 1, 'user', 'hi', array_fill(0.5, ARRAY[1536])::vector)",
            "UPDATE contexts SET message_count = 1, name = 'renamed'",
            "UPDATE messages SET content = 'hello'",
            "DELETE FROM messages",
            "DELETE FROM contexts",
            "CREATE TABLE app_made (id int)",
            "DROP TABLE messages",
            "ALTER TABLE contexts ADD COLUMN extra int",
            "TRUNCATE contexts",
            f"SELECT * FROM {LEDGER}",
            f"DELETE FROM {LEDGER}",
        )
    )
    assert results[:6] == ["ok"] * 6
    assert results[6:] == ["InsufficientPrivilegeError"] * 6
    assert table_exists(roles.database, "messages") and not table_exists(roles.database, "app_made")


def test_probe_role_reads_the_ledger_and_no_table_data(roles: Roles) -> None:
    assert owner_up(roles).code == 0
    results = asyncio.run(
        execute_as(
            roles.url(roles.probe),
            f"SELECT count(*) FROM {LEDGER}",
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            "SELECT * FROM messages",
            "SELECT * FROM contexts",
            f"DELETE FROM {LEDGER}",
        )
    )
    assert results == [
        "ok",
        "ok",
        "InsufficientPrivilegeError",
        "InsufficientPrivilegeError",
        "ReadOnlySQLTransactionError",
    ]


@pytest.mark.parametrize(
    "verb", [["status"], ["status", "--json"], ["plan"], ["verify"], ["wait", "--timeout", "5"]]
)
def test_read_verbs_work_as_the_probe_role(roles: Roles, verb: list[str]) -> None:
    assert owner_up(roles).code == 0
    outcome = run_inprocess(verb, migrator_env(roles.url(roles.probe)))
    assert outcome.code == 0, outcome.stderr


def test_tables_added_by_later_migrations_are_granted_too(roles: Roles, write_migrations: Files) -> None:
    first = {"0001_first.sql": "CREATE TABLE first_t (id int PRIMARY KEY);\n"}
    directory = write_migrations(first)
    assert owner_up(roles, MIGRATIONS_DIR=str(directory)).code == 0
    write_migrations({"0002_second.sql": "CREATE TABLE second_t (id serial PRIMARY KEY, note text);\n"})
    assert owner_up(roles, MIGRATIONS_DIR=str(directory)).code == 0
    assert held(roles.database, roles.app, "public.second_t") == set(DML)
    results = asyncio.run(
        execute_as(roles.url(roles.app), "INSERT INTO second_t (note) VALUES ('serial needs the sequence')")
    )
    assert results == ["ok"]
    # Default privileges, so the grant exists from the moment a later migration creates its table.
    defaults = roles.database.psql(
        "SELECT defaclobjtype::text || ':' || array_to_string(defaclacl, ',') FROM pg_default_acl ORDER BY 1"
    )
    assert f"r:{roles.app}=arwd/{roles.owner}" in defaults


def test_unset_roles_grant_nothing_and_say_so_once(roles: Roles) -> None:
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.owner)))
    assert outcome.code == 0, outcome.stderr
    assert outcome.names().count("grants_skipped") == 1
    skipped = next(e for e in outcome.events() if e["event"] == "grants_skipped")
    assert "MIGRATOR_APP_ROLE and MIGRATOR_PROBE_ROLE unset" in str(skipped["msg"])
    assert held(roles.database, roles.app, "public.contexts") == set()
    assert held(roles.database, roles.probe, LEDGER) == set()


def test_a_role_setting_naming_no_role_exits_2_before_anything(roles: Roles) -> None:
    outcome = owner_up(roles, MIGRATOR_APP_ROLE="Kata_App_Typo")
    assert outcome.code == 2, outcome.stderr
    assert "MIGRATOR_APP_ROLE='Kata_App_Typo' names no role" in outcome.final_message
    assert outcome.events()[-1]["event"] == "role_missing"
    assert ledger(roles.database) == [] and not table_exists(roles.database, "contexts")


def test_one_role_for_app_and_probe_is_a_usage_error(roles: Roles) -> None:
    outcome = owner_up(roles, MIGRATOR_PROBE_ROLE=roles.app)
    assert outcome.code == 2 and "both name" in outcome.final_message


def test_flags_name_the_roles_too(roles: Roles) -> None:
    env = migrator_env(roles.url(roles.owner))
    outcome = run_inprocess(["up", "--app-role", roles.app, "--probe-role", roles.probe], env)
    assert outcome.code == 0, outcome.stderr
    assert held(roles.database, roles.probe, LEDGER) == {"SELECT"}


# --- permission denied: exit 10, naming object, privilege and GRANT, for every verb ---------


@pytest.mark.parametrize("verb", [["status"], ["plan"], ["verify"], ["wait", "--timeout", "5"]])
def test_read_verbs_without_select_on_the_ledger_exit_10_with_the_grant(
    roles: Roles, verb: list[str]
) -> None:
    assert owner_up(roles).code == 0
    outcome = run_inprocess(verb, migrator_env(roles.url(roles.app)))
    assert outcome.code == 10, outcome.stderr
    assert outcome.events()[-1]["event"] == "insufficient_privilege"
    message = outcome.final_message
    assert f"role {roles.app} lacks SELECT on table {LEDGER}" in message
    assert f"GRANT SELECT ON TABLE {LEDGER} TO {roles.app};" in message
    assert "MIGRATOR_PROBE_ROLE" in message and "unexpected internal error" not in outcome.stderr


@pytest.mark.parametrize("verb", [["up"], ["baseline", "1"]])
def test_writing_verbs_as_the_app_role_exit_10_and_say_they_need_the_owner(
    roles: Roles, verb: list[str]
) -> None:
    assert owner_up(roles).code == 0
    before = ledger(roles.database)
    outcome = run_inprocess(verb, migrator_env(roles.url(roles.app)))
    assert outcome.code == 10, outcome.stderr
    message = outcome.final_message
    assert f"lacks CREATE on schema public; SELECT on table {LEDGER}; INSERT on table {LEDGER}" in message
    assert f"GRANT CREATE ON SCHEMA public TO {roles.app};" in message
    assert "meant to run as the schema owner role" in message
    assert ledger(roles.database) == before


def test_up_as_the_app_role_on_a_new_database_exits_10_before_creating_anything(roles: Roles) -> None:
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.app)))
    assert outcome.code == 10, outcome.stderr
    assert f"role {roles.app} lacks CREATE on schema public" in outcome.final_message
    assert not table_exists(roles.database, LEDGER) and not table_exists(roles.database, "contexts")


def test_a_migration_altering_a_table_it_does_not_own_exits_10_and_rolls_back(
    roles: Roles, write_migrations: Files
) -> None:
    roles.database.psql("CREATE TABLE admin_made (id int)")  # owned by the superuser
    directory = write_migrations(
        {
            "0001_ok.sql": "CREATE TABLE mine (id int);\n",
            "0002_alter.sql": (
                "CREATE TABLE also_mine (id int);\n\nALTER TABLE admin_made ADD COLUMN x int;\n"
            ),
        }
    )
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.owner), MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 10, outcome.stderr
    message = outcome.final_message
    assert f"role {roles.owner} lacks ownership on table admin_made" in message
    assert f"ALTER TABLE admin_made OWNER TO {roles.owner};" in message
    assert "migration 0002_alter.sql, line 3, column 1: rolled back, nothing recorded" in message
    assert ledger(roles.database) == ["1|applied"] and not table_exists(roles.database, "also_mine")


def test_a_migration_touching_the_extension_as_non_owner_exits_10(
    roles: Roles, write_migrations: Files
) -> None:
    directory = write_migrations({"0001_ext.sql": "ALTER EXTENSION vector UPDATE;\n"})
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.owner), MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 10, outcome.stderr
    assert f"role {roles.owner} lacks ownership on extension vector" in outcome.final_message
    assert "the statement as the owner of extension vector or a superuser" in outcome.final_message


def test_the_owner_without_pgvector_exits_4_with_the_statement(roles: Roles) -> None:
    roles.database.psql("DROP EXTENSION vector")
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.owner)))
    assert outcome.code == 4, outcome.stderr
    assert f"role {roles.owner} may not create it" in outcome.final_message
    assert "CREATE EXTENSION IF NOT EXISTS vector;" in outcome.final_message


def test_granting_on_a_table_the_owner_does_not_own_exits_10(roles: Roles) -> None:
    roles.database.psql("CREATE TABLE admin_made (id int)")
    outcome = owner_up(roles)
    assert outcome.code == 10, outcome.stderr
    assert f"ALTER TABLE public.admin_made OWNER TO {roles.owner};" in outcome.final_message


def test_a_grant_revoked_while_wait_polls_still_exits_10(roles: Roles, write_migrations: Files) -> None:
    # Not foreseen by the check before the verb: the server's own "permission denied" is explained.
    directory = write_migrations({"0001_a.sql": "CREATE TABLE a (id int);\n"})
    assert owner_up(roles, MIGRATIONS_DIR=str(directory)).code == 0
    write_migrations({"0002_b.sql": "CREATE TABLE b (id int);\n"})
    env = migrator_env(roles.url(roles.probe), MIGRATIONS_DIR=str(directory))
    waiter = start_process(["wait", "--timeout", "60"], env)
    try:
        assert waiter.stderr is not None
        seen = [waiter.stderr.readline()]
        while seen[-1] and '"event": "waiting"' not in seen[-1]:  # past its checks, polling
            seen.append(waiter.stderr.readline())
        roles.database.psql(f"REVOKE SELECT ON {LEDGER} FROM {roles.probe}")
        _, rest = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    stderr = "".join(seen) + rest
    assert waiter.returncode == 10, stderr
    final = Outcome(10, "", stderr).final_message
    assert f"role {roles.probe} lacks SELECT on table kata_schema_migrations" in final
    assert f"GRANT SELECT ON TABLE kata_schema_migrations TO {roles.probe};" in final


@pytest.mark.parametrize(
    ("message", "statement", "expected"),
    [
        ("permission denied for table t", "INSERT INTO t VALUES (1)", "INSERT on table t"),
        ("permission denied for table t", "create table u (id int references t)", "REFERENCES on table t"),
        ("permission denied for table t", "CREATE VIEW v AS SELECT * FROM t", "SELECT on table t"),
        ("permission denied for schema app", "CREATE TABLE app.x (id int)", "CREATE on schema app"),
        ("permission denied for schema app", "SELECT 1 FROM app.x", "USAGE on schema app"),
        ("permission denied for sequence s", "SELECT nextval('s')", "USAGE on sequence s"),
        ("permission denied for type Mood", 'CREATE TABLE x (m "Mood")', 'USAGE on type "Mood"'),
        ("permission denied for function f", "SELECT f()", "EXECUTE on function f"),
        ("must be owner of table t", "ALTER TABLE t ADD COLUMN c int", "ownership on table t"),
    ],
)
def test_the_privilege_is_read_from_the_message_and_the_statement(
    message: str, statement: str, expected: str
) -> None:
    error = asyncpg.InsufficientPrivilegeError(message)
    missing = privileges.from_server(error, "kata_app", statement)
    assert missing is not None and missing.describe() == expected


def test_grant_statements_quote_names_that_need_it() -> None:
    error = asyncpg.InsufficientPrivilegeError("permission denied for type Mood")
    missing = privileges.from_server(error, "App Role", "SELECT 1")
    assert missing is not None
    assert missing.statement == 'GRANT USAGE ON TYPE "Mood" TO "App Role";'
    assert (
        privileges.from_server(asyncpg.InsufficientPrivilegeError("permission denied to set x"), "r", "")
        is None
    )


def test_up_takes_back_ledger_privileges_the_app_and_probe_should_not_have(roles: Roles) -> None:
    assert owner_up(roles).code == 0
    roles.database.psql(f"GRANT SELECT, INSERT, DELETE ON {LEDGER} TO {roles.app}, {roles.probe}")
    outcome = owner_up(roles)
    assert outcome.code == 0, outcome.stderr
    assert held(roles.database, roles.app, LEDGER) == set()
    assert held(roles.database, roles.probe, LEDGER) == {"SELECT"}
    statements = next(e["statements"] for e in outcome.events() if e["event"] == "grants_revoked")
    assert f"REVOKE DELETE, INSERT, SELECT ON TABLE {LEDGER} FROM {roles.app}" in statements
    assert f"REVOKE DELETE, INSERT ON TABLE {LEDGER} FROM {roles.probe}" in statements


def test_grants_cover_schema_public_when_the_owner_has_a_schema_of_its_own(roles: Roles) -> None:
    assert run_inprocess(["up"], migrator_env(roles.url(roles.owner))).code == 0
    # With the default search_path ("$user", public) the owner's schema is current_schema().
    roles.database.psql(f'CREATE SCHEMA "{roles.owner}" AUTHORIZATION "{roles.owner}"')
    outcome = owner_up(roles)
    assert outcome.code == 0, outcome.stderr
    assert held(roles.database, roles.app, "public.contexts") == set(DML)
    assert held(roles.database, roles.probe, LEDGER) == {"SELECT"}


@pytest.mark.parametrize("verb", [["up"], ["status"]])
def test_a_database_without_schema_public_is_a_usage_error_naming_it(
    database: Database, verb: list[str]
) -> None:
    database.psql("DROP SCHEMA public CASCADE")
    outcome = run_inprocess(verb, migrator_env(database.url))
    assert outcome.code == 2, outcome.stderr
    assert "schema 'public' does not exist" in outcome.final_message
    assert "CREATE SCHEMA public" in outcome.final_message
