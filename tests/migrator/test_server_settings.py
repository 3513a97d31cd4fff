"""What the database, the role or the server is set to never ends a run with exit 1: a read-only
database is a setting to reset (exit 2), a hot standby is waited for (exit 3 after
--connect-timeout), a role's tiny timeouts do not reach the migrator's own queries, a ledger of the
wrong shape is drift of the record itself (exit 6), and a role without CONNECT is a GRANT (exit 10)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localpg.cluster import give
from localpg.throwaway import PostgresServer, wheel_bin_dir
from tests.conftest import Database, Roles
from tests.migrator.conftest import (
    ledger,
    migrator_env,
    process_env,
    run_inprocess,
    run_process,
    start_process,
    table_exists,
)
from tests.polling import wait_until
from tests.schema.conftest import LATEST

Files = Callable[[dict[str, str | bytes]], Path]
ALL = [f"{version}|applied" for version in range(1, LATEST + 1)]
SETTING = "default_transaction_read_only"


def untouched(db: Database) -> bool:
    """Nothing created: no extension, no ledger, no application table."""
    extension = db.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
    return ledger(db) == [] and not table_exists(db, "contexts") and extension == "0"


@pytest.mark.parametrize(
    ("scope", "where", "reset"),
    [
        ("DATABASE {db}", "for database {db}", "ALTER DATABASE {db} RESET"),
        (
            "ROLE {role} IN DATABASE {db}",
            "for role {role} in database {db}",
            "ALTER ROLE {role} IN DATABASE {db} RESET",
        ),
    ],
)
@pytest.mark.parametrize("verb", [["up"], ["baseline", "1"]])
def test_a_read_only_database_exits_2_naming_where_it_is_set_and_the_reset(
    roles: Roles, scope: str, where: str, reset: str, verb: list[str]
) -> None:
    db = roles.database
    names = {"db": db.name, "role": roles.owner}
    db.psql(f"ALTER {scope.format(**names)} SET {SETTING} = on")
    outcome = run_inprocess(verb, migrator_env(roles.url(roles.owner)))
    assert outcome.code == 2, outcome.stderr
    assert outcome.names()[-1] == "read_only_database", outcome.stderr
    message = outcome.final_message
    assert f"{SETTING} is on, set {where.format(**names)}" in message, message
    assert "nothing was done" in message
    assert ledger(db) == [] and not table_exists(db, "contexts")
    fix = message.split("run `", 1)[1].split("`", 1)[0]
    assert f"{reset.format(**names)} {SETTING};" in fix, message
    db.psql(fix)  # as the message says, in a session the setting makes read-only too
    assert run_inprocess(["up"], migrator_env(roles.url(roles.owner))).code == 0


def test_the_probe_role_running_up_is_told_to_use_the_owner_not_to_reset_its_read_only(roles: Roles) -> None:
    # deploy/roles.sql makes the probe's role read-only on purpose: the Secret is what is wrong.
    outcome = run_inprocess(["up"], migrator_env(roles.url(roles.probe)))
    assert outcome.code == 10, outcome.stderr
    assert "meant to run as the schema owner role" in outcome.final_message
    assert "RESET" not in outcome.final_message


@pytest.fixture
def standby() -> Iterator[tuple[PostgresServer, str]]:
    """A server of its own in hot standby (recovery with no primary to follow): it answers
    read-only queries, refuses every write, and `pg_ctl promote` makes it a primary, as a
    failover does. With a database already made while it was a primary."""
    server = PostgresServer.start(wheel_bin_dir(16))
    try:
        name = server.create_database()
        server.halt()
        signal_file = server.data_dir / "standby.signal"
        signal_file.write_text("")
        give(signal_file)
        server.resume()
        assert server.psql("SELECT pg_is_in_recovery()") == "t"
        yield server, name
    finally:
        server.stop()


def test_a_hot_standby_is_waited_for_and_up_applies_once_it_is_promoted(
    standby: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, name = standby
    env = migrator_env(server.url(name))
    # The verbs that only read work on a standby; they need no primary.
    status = run_inprocess(["status", "--json"], env)
    assert status.code == 0, status.stderr
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrator", "up", "--connect-timeout", "60"],
            env=process_env(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_until(
                lambda: "server is a read-only hot standby" in log.read_text(),
                what="a retry naming the standby",
                process=proc,
            )
            promoted = server.cluster.run("pg_ctl", "promote", "-D", str(server.data_dir), "-w")
            assert promoted.returncode == 0, promoted.stderr
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            proc.kill()
    assert '"event": "migrations_applied"' in log.read_text()
    assert server.psql("SELECT count(*) FROM kata_schema_migrations", name) == str(LATEST)


def test_a_standby_that_stays_one_exits_3_after_the_connect_timeout(
    standby: tuple[PostgresServer, str],
) -> None:
    server, name = standby
    outcome = run_inprocess(["up", "--connect-timeout", "1"], migrator_env(server.url(name)))
    assert outcome.code == 3, outcome.stderr
    assert outcome.names()[-1] == "database_unreachable"
    assert "connect_retry" in outcome.names()
    message = outcome.final_message
    assert "server is a read-only hot standby" in message and "primary" in message, message
    assert server.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'", name) == "0"


def test_a_tiny_idle_in_transaction_timeout_on_the_roles_does_not_end_the_migrators_sessions(
    roles: Roles,
) -> None:
    db = roles.database
    for role in (roles.owner, roles.probe):
        db.psql(f"ALTER ROLE {role} IN DATABASE {db.name} SET idle_in_transaction_session_timeout = '1ms'")
    grants = {"MIGRATOR_APP_ROLE": roles.app, "MIGRATOR_PROBE_ROLE": roles.probe}
    # A transactional file idles in its transaction for a round trip between two statements; the
    # read verbs read in a transaction.
    up = run_inprocess(["up"], migrator_env(roles.url(roles.owner), **grants))
    assert up.code == 0, up.stderr
    assert ledger(db) == ALL
    for verb in (["status"], ["verify"], ["plan"], ["wait", "--timeout", "5"]):
        outcome = run_inprocess(verb, migrator_env(roles.url(roles.probe)))
        assert outcome.code == 0, (verb, outcome.stderr)


class Holder:
    """A psql session of the superuser taking locks on command, ended (releasing them) on close."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.proc = db.server.psql_session(db.name, application_name="lock-holder")
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin

    def run(self, sql: str) -> None:
        self.stdin.write(sql + "\n")
        self.stdin.flush()

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(10)


def migrator_waited_on_a_lock(db: Database, seconds: float) -> bool:
    """The migrator's current statement has waited for a lock for `seconds` (the server's clock)."""
    return (
        db.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kata-migrate@test-pod' "
            f"AND wait_event_type = 'Lock' AND clock_timestamp() - query_start > interval '{seconds} s'"
        )
        == "1"
    )


ROLE_TIMEOUT = "200ms"


def test_a_statement_timeout_on_the_role_does_not_cut_short_a_read_verbs_own_query(roles: Roles) -> None:
    db = roles.database
    assert (
        run_inprocess(["up"], migrator_env(roles.url(roles.owner), MIGRATOR_PROBE_ROLE=roles.probe)).code == 0
    )
    db.psql(f"ALTER ROLE {roles.probe} IN DATABASE {db.name} SET statement_timeout = '{ROLE_TIMEOUT}'")
    holder = Holder(db)
    try:
        holder.run("BEGIN; LOCK TABLE kata_schema_migrations IN ACCESS EXCLUSIVE MODE; SELECT 1;")
        wait_until(lambda: db.psql(LOCKED) != "0", what="the holder to lock the ledger")
        reader = start_process(["status"], migrator_env(roles.url(roles.probe)))
        try:
            # Blocked reading the ledger for longer than the role allows any statement.
            wait_until(lambda: migrator_waited_on_a_lock(db, 0.5), what="a long wait", process=reader)
            holder.run("COMMIT;")
            _out, err = reader.communicate(timeout=30)
        finally:
            reader.kill()
    finally:
        holder.close()
    assert reader.returncode == 0, err


def test_after_a_no_transaction_file_the_migrators_limits_hold_not_the_roles(
    database: Database, write_migrations: Files
) -> None:
    database.psql(f"ALTER ROLE postgres IN DATABASE {database.name} SET statement_timeout = '{ROLE_TIMEOUT}'")
    directory = write_migrations(
        {
            "0001_a.sql": "CREATE TABLE a (id int);\n",
            "0002_wait.sql": "-- migrate: no-transaction\nSELECT pg_advisory_xact_lock(42);\n",
        }
    )
    holder = Holder(database)
    try:
        holder.run("SELECT pg_advisory_lock(42);")
        wait_until(lambda: database.psql(ADVISORY_42) == "1", what="the holder to take lock 42")
        migrator = start_process(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
        try:
            wait_until(lambda: migrator_waited_on_a_lock(database, 0), what="0002 to wait", process=migrator)
            # The ledger row of 0002, the migrator's own statement after the file, now waits too.
            holder.run("BEGIN; LOCK TABLE kata_schema_migrations IN ACCESS EXCLUSIVE MODE;")
            wait_until(lambda: database.psql(LOCKED) != "0", what="the holder to lock the ledger")
            holder.run("SELECT pg_advisory_unlock(42);")
            wait_until(lambda: migrator_waited_on_a_lock(database, 0.5), what="a long wait", process=migrator)
            holder.run("COMMIT;")
            _out, err = migrator.communicate(timeout=30)
        finally:
            migrator.kill()
    finally:
        holder.close()
    assert migrator.returncode == 0, err
    assert ledger(database) == ["1|applied", "2|applied"]


LOCKED = "SELECT count(*) FROM pg_locks WHERE relation = 'kata_schema_migrations'::regclass AND granted"
ADVISORY_42 = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted"


@pytest.mark.parametrize(
    ("limits", "sqlstate", "advice"),
    [
        (["--statement-timeout", "0.5", "--ddl-lock-timeout", "0"], "57014", "--statement-timeout"),
        (["--ddl-lock-timeout", "0.5"], "55P03", "--ddl-lock-timeout"),
    ],
)
def test_the_migrators_own_query_stopped_by_its_own_limits_exits_3_saying_which(
    database: Database, limits: list[str], sqlstate: str, advice: str
) -> None:
    env = migrator_env(database.url)
    assert run_inprocess(["up"], env).code == 0
    # Another session holds the ledger: the read waits until one of the migrator's limits ends it.
    holder = Holder(database)
    try:
        holder.run("BEGIN; LOCK TABLE kata_schema_migrations IN ACCESS EXCLUSIVE MODE;")
        wait_until(lambda: database.psql(LOCKED) != "0", what="the holder to lock the ledger")
        outcome = run_process(["status", *limits], env, timeout=60)  # a process: bounded, should it wait
    finally:
        holder.close()
    assert outcome.code == 3, outcome.stderr
    assert outcome.names()[-1] == "query_failed"
    assert f"SQLSTATE {sqlstate}" in outcome.final_message and advice in outcome.final_message


LEDGER_COLUMNS = {
    "version": "bigint PRIMARY KEY",
    "name": "text NOT NULL",
    "checksum": "text NOT NULL",
    "applied_at": "timestamptz NOT NULL DEFAULT now()",
    "duration_ms": "double precision NOT NULL",
    "applied_by": "text NOT NULL",
    "kind": "text NOT NULL DEFAULT 'applied'",
}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kind": None}, "column kind is missing"),
        ({"version": "text PRIMARY KEY"}, "column version is text, not bigint"),
    ],
)
@pytest.mark.parametrize("verb", ["up", "status", "verify"])
def test_a_ledger_of_the_wrong_shape_exits_6_naming_the_table_and_what_is_wrong(
    database: Database, changes: dict[str, str | None], problem: str, verb: str
) -> None:
    columns = {**LEDGER_COLUMNS, **changes}
    definition = ", ".join(f"{name} {kind}" for name, kind in columns.items() if kind is not None)
    database.psql(f"CREATE TABLE public.kata_schema_migrations ({definition})")
    database.psql(
        "INSERT INTO public.kata_schema_migrations (version, name, checksum, duration_ms, applied_by) "
        "VALUES ('1', 'initial_schema', 'x', 1, 'someone')"
    )
    outcome = run_inprocess([verb], migrator_env(database.url))
    assert outcome.code == 6, outcome.stderr
    assert outcome.names()[-1] == "ledger_drift"
    message = outcome.final_message
    assert "public.kata_schema_migrations" in message and problem in message, message
    assert "do not drop it" in message and "RENAME TO" in message, message
    assert "missing here" not in message  # not the old "applied but missing" for every file
    assert not table_exists(database, "contexts")
    assert database.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == "0"


def test_a_role_without_connect_exits_10_at_once_naming_the_grant(roles: Roles) -> None:
    db = roles.database
    db.psql(f"REVOKE CONNECT ON DATABASE {db.name} FROM {roles.owner}")
    # A process of its own, timed from outside: the bound is --connect-timeout, which it would
    # have spent retrying.
    outcome = run_process(["up", "--connect-timeout", "30"], migrator_env(roles.url(roles.owner)))
    assert outcome.code == 10, outcome.stderr
    assert "connect_retry" not in outcome.names()  # no amount of waiting grants it
    message = outcome.final_message
    assert f"lacks CONNECT on database {db.name}" in message, message
    assert f"`GRANT CONNECT ON DATABASE {db.name} TO {roles.owner};`" in message, message
    assert outcome.seconds < 20  # from outside: far below the 30 s it would have retried


def test_a_write_refused_as_read_only_in_the_middle_of_a_file_is_exit_2_not_fix_the_file(
    database: Database, write_migrations: Files
) -> None:
    """The server turning read-only while a file runs (ALTER SYSTEM and a reload, a failover to a
    standby) refuses the next write with 25006. Here the file's own SET stands in for it, since
    ALTER SYSTEM would change the test server every other test shares."""
    directory = write_migrations(
        {
            "0001_first.sql": "-- migrate: no-transaction\n"
            "CREATE TABLE before_it (id int);\n"
            "SET default_transaction_read_only = on;\n"
            "CREATE TABLE after_it (id int);\n"
        }
    )
    outcome = run_inprocess(["up"], migrator_env(database.url, MIGRATIONS_DIR=str(directory)))
    assert outcome.code == 2, outcome.stderr
    assert outcome.names()[-1] == "read_only_database"
    assert "fix the file" not in outcome.final_message
    assert ledger(database) == []
