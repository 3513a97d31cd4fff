"""The application's and the probe's roles end with exactly docs/deploy.md's "Roles" table, on a
real PostgreSQL with the three roles of deploy/roles.sql: `up` refuses (exit 2, before anything is
applied) a role that is a superuser, has BYPASSRLS, or is a member of a role that holds more, and
takes back, reporting each, a privilege beyond the table that the owner granted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from localpg.throwaway import PostgresServer
from migrator import grants
from migrator.events import EventLog
from tests.conftest import Database, Roles, three_roles
from tests.migrator.conftest import Outcome, ledger, migrator_env, run_inprocess, table_exists
from tests.polling import wait_until

Files = Callable[[dict[str, str | bytes]], Path]
LEDGER = "public.kata_schema_migrations"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
DML = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def owner_up(roles: Roles, **env: str) -> Outcome:
    settings = {"MIGRATOR_APP_ROLE": roles.app, "MIGRATOR_PROBE_ROLE": roles.probe, **env}
    return run_inprocess(["up"], migrator_env(roles.url(roles.owner), **settings))


@dataclass(frozen=True)
class Cluster:
    """The test's roles plus the extra ones it makes (`team`, `crew`): role memberships and
    attributes are cluster-wide, so teardown undoes them for the next test on the shared server."""

    roles: Roles

    @property
    def db(self) -> Database:
        return self.roles.database

    @property
    def team(self) -> str:
        return f"{self.roles.owner.removesuffix('_owner')}_team"

    @property
    def crew(self) -> str:
        return f"{self.roles.owner.removesuffix('_owner')}_crew"

    def names(self) -> dict[str, str]:
        r = self.roles
        return {
            "owner": r.owner,
            "app": r.app,
            "probe": r.probe,
            "team": self.team,
            "crew": self.crew,
            "db": self.db.name,
        }

    def run(self, sql: str) -> None:
        self.db.psql(sql.format(**self.names()))

    def reset(self) -> None:
        for extra in (self.team, self.crew):
            if self.db.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{extra}'") == "1":
                self.db.psql(f'DROP OWNED BY "{extra}"; DROP ROLE "{extra}"')
        for role in (self.roles.app, self.roles.probe):
            member_of = self.db.psql(
                "SELECT string_agg(roleid::regrole::text, ', ') FROM pg_auth_members "
                f"WHERE member = '{role}'::regrole"
            )
            if member_of:
                self.db.psql(f'REVOKE {member_of} FROM "{role}"')
            self.db.psql(f'ALTER ROLE "{role}" NOSUPERUSER NOBYPASSRLS')
        # Back to the administrator; the owner's CONNECT merged into its owner entry goes with it.
        self.db.psql(f'ALTER DATABASE "{self.db.name}" OWNER TO postgres')
        self.run("GRANT CONNECT ON DATABASE {db} TO {owner}, {app}, {probe}")


@pytest.fixture
def cluster(roles: Roles) -> Iterator[Cluster]:
    made = Cluster(roles)
    try:
        yield made
    finally:
        made.reset()


def table_privileges(db: Database, role: str, table: str) -> set[str]:
    """What PostgreSQL lets `role` do to `table`, column grants included."""
    checks = ", ".join(
        f"has_any_column_privilege('{role}', '{table}', '{p}')"
        if p in ("SELECT", "INSERT", "UPDATE", "REFERENCES")
        else f"has_table_privilege('{role}', '{table}', '{p}')"
        for p in TABLE_PRIVILEGES
    )
    answers = db.psql(f"SELECT {checks}").split("|")
    return {p for p, answer in zip(TABLE_PRIVILEGES, answers, strict=True) if answer == "t"}


def schema_privileges(db: Database, role: str) -> set[str]:
    usage, create = db.psql(
        f"SELECT has_schema_privilege('{role}', 'public', 'USAGE'), "
        f"has_schema_privilege('{role}', 'public', 'CREATE')"
    ).split("|")
    return {p for p, answer in (("USAGE", usage), ("CREATE", create)) if answer == "t"}


def sequence_privileges(db: Database, role: str, sequence: str) -> set[str]:
    answers = db.psql(
        ", ".join(
            f"has_sequence_privilege('{role}', '{sequence}', '{p}')" for p in ("USAGE", "SELECT", "UPDATE")
        ).join(("SELECT ", ""))
    ).split("|")
    return {p for p, answer in zip(("USAGE", "SELECT", "UPDATE"), answers, strict=True) if answer == "t"}


def documented(roles: Roles) -> bool:
    """The app and probe hold exactly what docs/deploy.md's table says, by PostgreSQL's own checks."""
    db = roles.database
    tables = db.psql(
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ' ') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'kata_schema_migrations'"
    ).split()
    sequences = db.psql(
        "SELECT string_agg(format('%I.%I', schemaname, sequencename), ' ') FROM pg_sequences "
        "WHERE schemaname = 'public'"
    ).split()
    return (
        all(table_privileges(db, roles.app, t) == DML for t in tables)
        and all(table_privileges(db, roles.probe, t) == set() for t in tables)
        and table_privileges(db, roles.app, LEDGER) == set()
        and table_privileges(db, roles.probe, LEDGER) == {"SELECT"}
        and schema_privileges(db, roles.app) == {"USAGE"}
        and schema_privileges(db, roles.probe) == {"USAGE"}
        and all(sequence_privileges(db, roles.app, s) == {"USAGE"} for s in sequences)
        and all(sequence_privileges(db, roles.probe, s) == set() for s in sequences)
    )


def refused_before_anything(outcome: Outcome, roles: Roles) -> str:
    assert outcome.code == 2, outcome.stderr
    assert outcome.events()[-1]["event"] == "role_refused"
    assert "lock_acquired" not in outcome.names()  # refused before the lock: nothing applied
    assert ledger(roles.database) == [] and not table_exists(roles.database, "contexts")
    assert "nothing was changed" in outcome.final_message
    return outcome.final_message


# --- memberships and attributes: exit 2 naming them and the fix, before anything ----------


@pytest.mark.parametrize(
    ("setup", "side", "expected"),
    [
        (
            "GRANT {owner} TO {app}",
            "app",
            ["is a member of {owner} (the role the migrator", "REVOKE {owner} FROM {app};"],
        ),
        (
            "GRANT {owner} TO {probe} WITH INHERIT FALSE, SET TRUE",
            "probe",
            ["is a member of {owner}", "with SET it can become that role", "REVOKE {owner} FROM {probe};"],
        ),
        ("GRANT {owner} TO {app} WITH INHERIT FALSE, SET FALSE", "app", ["is a member of {owner}"]),
        (
            "CREATE ROLE {team}; CREATE ROLE {crew}; GRANT {owner} TO {crew}; GRANT {crew} TO {team}; "
            "GRANT {team} TO {app}",
            "app",
            [
                "is a member of {owner} (the role the migrator connects as, which owns the tables and the "
                "ledger) through {team}",
                "REVOKE {team} FROM {app};",
            ],
        ),
        (
            "GRANT pg_read_all_data TO {probe}",
            "probe",
            ["is a member of pg_read_all_data (reads every table)", "REVOKE pg_read_all_data FROM {probe};"],
        ),
        (
            "GRANT pg_write_all_data TO {app}",
            "app",
            ["is a member of pg_write_all_data (writes every table)"],
        ),
        ("GRANT pg_read_server_files TO {probe}", "probe", ["is a member of pg_read_server_files"]),
        ("GRANT pg_execute_server_program TO {app}", "app", ["is a member of pg_execute_server_program"]),
        (
            "CREATE ROLE {team}; GRANT pg_read_all_data TO {team}; GRANT {team} TO {probe}",
            "probe",
            ["is a member of pg_read_all_data (reads every table) through {team}"],
        ),
        (
            "GRANT {app} TO {probe}",
            "probe",
            ["is a member of {app} (the other role `up` grants to)", "REVOKE {app} FROM {probe};"],
        ),
        ("GRANT {probe} TO {app}", "app", ["is a member of {probe} (the other role `up` grants to)"]),
        ("ALTER ROLE {app} SUPERUSER", "app", ["is a superuser", "ALTER ROLE {app} NOSUPERUSER;"]),
        ("ALTER ROLE {probe} BYPASSRLS", "probe", ["has BYPASSRLS", "ALTER ROLE {probe} NOBYPASSRLS;"]),
        (
            "CREATE ROLE {team} SUPERUSER; GRANT {team} TO {probe}",
            "probe",
            ["is a member of {team} (a superuser role)", "REVOKE {team} FROM {probe};"],
        ),
        (
            "ALTER DATABASE {db} OWNER TO {app}",
            "app",
            [
                "owns database {db} and so is a member of pg_database_owner (the owner of schema public)",
                "ALTER DATABASE {db} OWNER TO {owner};",
            ],
        ),
    ],
    ids=[
        "owner",
        "owner-set-no-inherit",
        "owner-no-set-no-inherit",
        "owner-indirect",
        "read-all-data",
        "write-all-data",
        "read-server-files",
        "execute-server-program",
        "read-all-data-indirect",
        "probe-member-of-app",
        "app-member-of-probe",
        "superuser",
        "bypassrls",
        "superuser-role",
        "database-owner",
    ],
)
def test_a_role_that_could_take_more_is_refused_with_exit_2_naming_it_and_the_fix(
    cluster: Cluster, setup: str, side: str, expected: list[str]
) -> None:
    cluster.run(setup)
    message = refused_before_anything(owner_up(cluster.roles), cluster.roles)
    setting = "MIGRATOR_APP_ROLE" if side == "app" else "MIGRATOR_PROBE_ROLE"
    names = cluster.names()
    assert f"{setting}={names[side]!r}" in message, message
    for fragment in expected:
        assert fragment.format(**names) in message, message


# --- privileges beyond the table: taken back and reported, or refused ---------------------


def test_up_takes_back_every_privilege_the_roles_must_never_hold_and_reports_each(cluster: Cluster) -> None:
    roles = cluster.roles
    assert owner_up(roles).code == 0
    # What the red team found kept: SELECT for the probe (also one column), TRUNCATE, REFERENCES
    # and TRIGGER for the app; granted as the owner does (a superuser's GRANT counts as the owner's).
    cluster.run(
        "GRANT SELECT ON contexts TO {probe}; GRANT SELECT (content) ON messages TO {probe}; "
        "GRANT TRUNCATE, REFERENCES, TRIGGER ON contexts, messages TO {app}; "
        "GRANT UPDATE ON kata_schema_migrations TO {probe}; GRANT SELECT ON kata_schema_migrations TO {app}"
    )
    assert not documented(roles)
    outcome = owner_up(roles)
    assert outcome.code == 0, outcome.stderr
    assert documented(roles)
    revoked = next(e for e in outcome.events() if e["event"] == "grants_revoked")
    names = cluster.names()
    assert set(revoked["statements"]) == {
        s.format(**names)
        for s in (
            "REVOKE REFERENCES, TRIGGER, TRUNCATE ON TABLE public.contexts FROM {app}",
            "REVOKE REFERENCES, TRIGGER, TRUNCATE ON TABLE public.messages FROM {app}",
            "REVOKE SELECT ON TABLE public.kata_schema_migrations FROM {app}",
            "REVOKE SELECT ON TABLE public.contexts FROM {probe}",
            "REVOKE SELECT ON TABLE public.messages FROM {probe}",
            "REVOKE UPDATE ON TABLE public.kata_schema_migrations FROM {probe}",
        )
    }
    again = owner_up(roles)
    assert again.code == 0, again.stderr
    assert "grants_revoked" not in again.names() and "grants_applied" not in again.names()


def test_sequence_privileges_beyond_usage_are_taken_back(cluster: Cluster, write_migrations: Files) -> None:
    roles = cluster.roles
    env = {
        "MIGRATIONS_DIR": str(write_migrations({"0001_t.sql": "CREATE TABLE t (id serial PRIMARY KEY);\n"}))
    }
    assert owner_up(roles, **env).code == 0
    cluster.run(
        "GRANT SELECT, UPDATE ON SEQUENCE t_id_seq TO {app}; GRANT USAGE ON SEQUENCE t_id_seq TO {probe}"
    )
    outcome = owner_up(roles, **env)
    assert outcome.code == 0, outcome.stderr
    assert sequence_privileges(roles.database, roles.app, "public.t_id_seq") == {"USAGE"}
    assert sequence_privileges(roles.database, roles.probe, "public.t_id_seq") == set()
    assert "grants_revoked" in outcome.names() and documented(roles)


def test_default_privileges_beyond_the_table_are_taken_back_before_new_tables_carry_them(
    cluster: Cluster, write_migrations: Files
) -> None:
    roles = cluster.roles
    directory = write_migrations({"0001_a.sql": "CREATE TABLE a (id int);\n"})
    assert owner_up(roles, MIGRATIONS_DIR=str(directory)).code == 0
    cluster.run(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT TRUNCATE ON TABLES TO {app}; "
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO {probe}"
    )
    write_migrations({"0002_b.sql": "CREATE TABLE b (id int);\n"})
    outcome = owner_up(roles, MIGRATIONS_DIR=str(directory))
    assert outcome.code == 0, outcome.stderr
    assert documented(roles)
    statements = next(e["statements"] for e in outcome.events() if e["event"] == "grants_revoked")
    names = cluster.names()
    assert (
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE TRUNCATE ON TABLES FROM {app}".format(**names)
        in statements
    )
    assert "ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM {probe}".format(**names) in statements
    left = roles.database.psql(
        "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a "
        f"WHERE a.grantee IN ('{roles.app}'::regrole, '{roles.probe}'::regrole) "
        "AND a.privilege_type NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'USAGE')"
    )
    assert left == "0"


def test_create_on_the_schema_granted_by_its_owner_is_refused_with_the_revoke_to_run(
    cluster: Cluster,
) -> None:
    # The schema belongs to pg_database_owner: the migrator's role cannot revoke what it granted.
    cluster.run("GRANT CREATE ON SCHEMA public TO {app}")
    message = refused_before_anything(owner_up(cluster.roles), cluster.roles)
    names = cluster.names()
    assert (
        "MIGRATOR_APP_ROLE={app!r} holds CREATE on schema public, which it must never hold".format(**names)
        in message
    )
    assert "REVOKE CREATE ON SCHEMA public FROM {app};".format(**names) in message


def test_create_on_the_schema_is_taken_back_when_the_owner_owns_the_database(cluster: Cluster) -> None:
    cluster.run("ALTER DATABASE {db} OWNER TO {owner}; GRANT CREATE ON SCHEMA public TO {app}")
    outcome = owner_up(cluster.roles)
    assert outcome.code == 0, outcome.stderr
    assert schema_privileges(cluster.db, cluster.roles.app) == {"USAGE"}
    statements = next(e["statements"] for e in outcome.events() if e["event"] == "grants_revoked")
    assert "REVOKE CREATE ON SCHEMA public FROM {app}".format(**cluster.names()) in statements


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            "GRANT SELECT ON contexts TO PUBLIC",
            [
                "MIGRATOR_PROBE_ROLE={probe!r} holds SELECT on table public.contexts",
                "through PUBLIC",
                "REVOKE SELECT ON TABLE public.contexts FROM PUBLIC;",
            ],
        ),
        (
            "CREATE ROLE {team}; GRANT SELECT ON kata_schema_migrations TO {team}; GRANT {team} TO {app}",
            [
                "MIGRATOR_APP_ROLE={app!r} holds SELECT on table public.kata_schema_migrations",
                "through its membership in {team}",
                "REVOKE {team} FROM {app};",
            ],
        ),
    ],
    ids=["public", "membership"],
)
def test_a_privilege_held_through_public_or_another_role_is_refused_and_nothing_changes(
    cluster: Cluster, setup: str, expected: list[str]
) -> None:
    roles = cluster.roles
    assert owner_up(roles).code == 0
    cluster.run(setup)
    before = roles.database.psql(
        "SELECT relname, relacl FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
    )
    outcome = owner_up(roles)
    assert outcome.code == 2, outcome.stderr
    assert outcome.events()[-1]["event"] == "role_refused" and "lock_acquired" not in outcome.names()
    names = cluster.names()
    for fragment in expected:
        assert fragment.format(**names) in outcome.final_message, outcome.final_message
    after = roles.database.psql(
        "SELECT relname, relacl FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
    )
    assert after == before


def test_revokes_wait_for_a_table_lock_no_longer_than_the_lock_timeout_given(
    pg18_server: PostgresServer,
) -> None:
    """PostgreSQL 18's GRANT and REVOKE take ACCESS SHARE on the table (16's take none): behind a
    session holding ACCESS EXCLUSIVE, the grants give up after their lock_timeout and change nothing.
    (Called directly: `up` reads the live schema first, whose deparsing waits on that lock too.)"""
    database = Database(pg18_server, pg18_server.create_database())
    holder = None
    try:
        roles = three_roles(database, "role_policy18")
        assert owner_up(roles).code == 0
        database.psql(f"GRANT TRUNCATE ON contexts TO {roles.app}")
        holder = pg18_server.psql_session(database.name, application_name="lock-holder")
        assert holder.stdin is not None
        holder.stdin.write("BEGIN;\nLOCK TABLE contexts IN ACCESS EXCLUSIVE MODE;\n")
        holder.stdin.flush()
        wait_until(
            lambda: (
                database.psql(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'contexts'::regclass "
                    "AND mode = 'AccessExclusiveLock' AND granted"
                )
                == "1"
            ),
            what="the holder to lock contexts",
        )
        log = EventLog(io.StringIO())
        # 1 s of lock_timeout ends the wait with 55P03; without one it would wait for good, which
        # the 30 s deadline (a wide margin) turns into a TimeoutError instead of a hung test.
        with pytest.raises(asyncpg.LockNotAvailableError):
            asyncio.run(asyncio.wait_for(apply_grants(roles, log, lock_timeout=1.0), 30))
        holder.stdin.close()
        holder.wait(10)
        assert "TRUNCATE" in table_privileges(database, roles.app, "public.contexts")
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        pg18_server.drop_database(database.name)


async def apply_grants(roles: Roles, log: EventLog, *, lock_timeout: float) -> None:
    conn = await asyncpg.connect(roles.url(roles.owner))
    try:
        await grants.apply(conn, grants.Roles(roles.app, roles.probe), log, lock_timeout=lock_timeout)
    finally:
        await conn.close()


# --- property: any memberships and grants among a handful of roles --------------------------

OBJECTS = ("contexts", "messages", "kata_schema_migrations")
MEMBER_OF = ("owner", "team", "app", "probe", "pg_read_all_data", "pg_write_all_data")
# Grants to the two roles themselves (what `up` takes back) are drawn most often; the rest
# (memberships, PUBLIC, another role's grants, attributes) mostly end in a refusal.
DIRECT_GRANTS = st.builds(
    lambda privilege, table, grantee: f"GRANT {privilege} ON {table} TO {grantee}",
    st.sampled_from(TABLE_PRIVILEGES),
    st.sampled_from(OBJECTS),
    st.sampled_from(("{app}", "{probe}")),
)
ACTIONS = st.one_of(
    DIRECT_GRANTS,
    DIRECT_GRANTS,
    DIRECT_GRANTS,
    st.builds(
        lambda role, member, inherit: f"GRANT {role} TO {member} WITH INHERIT {inherit}",
        st.sampled_from(MEMBER_OF).map(lambda r: r if r.startswith("pg_") else f"{{{r}}}"),
        st.sampled_from(("{app}", "{probe}", "{team}")),
        st.sampled_from(("TRUE", "FALSE")),
    ),
    st.builds(
        lambda privilege, table, grantee: f"GRANT {privilege} ON {table} TO {grantee}",
        st.sampled_from(TABLE_PRIVILEGES),
        st.sampled_from(OBJECTS),
        st.sampled_from(("{team}", "PUBLIC")),
    ),
    st.builds(
        lambda grantee: f"GRANT CREATE ON SCHEMA public TO {grantee}",
        st.sampled_from(("{app}", "{probe}", "{team}", "PUBLIC")),
    ),
    st.builds(
        lambda attribute, role: f"ALTER ROLE {role} {attribute}",
        st.sampled_from(("SUPERUSER", "BYPASSRLS")),
        st.sampled_from(("{app}", "{probe}")),
    ),
    st.just("ALTER DATABASE {db} OWNER TO {owner}"),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=1, max_size=4))
def test_up_either_refuses_or_leaves_exactly_the_documented_privileges(
    cluster: Cluster, actions: list[str]
) -> None:
    roles = cluster.roles
    if not table_exists(roles.database, "contexts"):
        assert owner_up(roles).code == 0
    cluster.run("CREATE ROLE {team}")
    for action in actions:
        # What PostgreSQL refuses (a circular membership) is simply not part of the state.
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.run(action)
    try:
        outcome = owner_up(roles)
        assert outcome.code in (0, 2), outcome.stderr
        event(f"exit {outcome.code}" + (", revoked" if "grants_revoked" in outcome.names() else ""))
        if outcome.code == 2:
            assert outcome.events()[-1]["event"] == "role_refused"
        else:
            assert documented(roles), (actions, outcome.stderr)
            again = owner_up(roles)
            assert again.code == 0 and "grants_revoked" not in again.names(), again.stderr
    finally:
        cluster.reset()
        cluster.run(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, {app}, {probe}; "
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC, {app}, {probe}"
        )
