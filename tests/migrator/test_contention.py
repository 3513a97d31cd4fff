"""Lock contention during `up` against the real server: a file blocked by another session's lock
is rolled back, the blocker named (never its query), retried with backoff, and after the retry
budget `up` exits 11 with nothing recorded. Which statements get the concurrent wait bound, the
backoff's bounds and how many attempts the budget allows need no server."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from migrator import contention
from migrator.blockers import Blocker
from migrator.contention import Backoff, Contention, ContentionRetry, waits_for_old_transactions
from migrator.events import EventLog
from migrator.migration_errors import BlockedByLocks
from migrator.settings import DDL_LOCK_TIMEOUT, LOCK_RETRY_BUDGET
from schema.catalog import Migration
from tests.conftest import Database, Roles
from tests.migrator.conftest import Events, ledger, migrator_env, run_inprocess, start_process, table_exists
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]

Files = Callable[[dict[str, str | bytes]], Path]
NO_TX = "-- migrate: no-transaction\n"
# In the blocker's query text: it must never reach the migrator's output.
SECRET = "kata-secret-7f3a"
EXIT_BLOCKED = 11


class Session:
    """A psql session that opens a transaction, runs `sql` in it and keeps it open until released."""

    def __init__(self, database: Database, application_name: str, sql: str) -> None:
        self.database = database
        self.process = database.server.psql_session(database.name, application_name=application_name)
        assert self.process.stdin is not None
        self.process.stdin.write(f"BEGIN;\n{sql}\n")
        self.process.stdin.flush()
        query = (
            "SELECT pid FROM pg_stat_activity "
            f"WHERE application_name = '{application_name}' AND state = 'idle in transaction'"
        )
        wait_until(lambda: database.psql(query) != "", what=f"{application_name}'s open transaction")
        self.pid = int(database.psql(query))

    def release(self) -> None:
        assert self.process.stdin is not None
        if not self.process.stdin.closed:
            self.process.stdin.write("COMMIT;\n")
            self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture
def sessions(database: Database) -> Iterator[Callable[[str, str], Session]]:
    opened: list[Session] = []

    def open_session(application_name: str, sql: str) -> Session:
        opened.append(Session(database, application_name, sql))
        return opened[-1]

    yield open_session
    for session in opened:
        session.release()


def names_blocker(event: dict[str, object], session: Session, application_name: str) -> bool:
    blockers = event["blockers"]
    assert isinstance(blockers, list)
    return any(b["pid"] == session.pid and b["application_name"] == application_name for b in blockers)


def test_a_blocker_released_after_lock_blocked_events_lets_up_apply_the_file(
    database: Database, write_migrations: Files, sessions: Callable[[str, str], Session]
) -> None:
    database.psql("CREATE TABLE busy (id int)")
    blocker = sessions("report-job", f"SELECT '{SECRET}' FROM busy;")  # ACCESS SHARE until COMMIT
    directory = write_migrations({"0001_alter.sql": "ALTER TABLE busy ADD COLUMN note text;\n"})
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(directory),
        MIGRATOR_DDL_LOCK_TIMEOUT="0.5",
        MIGRATOR_LOCK_RETRY_BUDGET="600",
    )
    run = Events(start_process(["up"], env))
    blocked = run.wait_for("lock_blocked", count=2)
    blocker.release()
    assert run.finish() == 0, "".join(run.lines)
    assert all(names_blocker(event, blocker, "report-job") for event in blocked), blocked
    assert f"pid {blocker.pid}" in str(blocked[0]["msg"]) and blocked[0]["file"] == "0001_alter.sql"
    names = [str(event["event"]) for event in run.events()]
    assert names.count("lock_retry") >= 2 and names.index("lock_retry") < names.index("migration_applied")
    assert names.count("migration_applied") == 1
    assert ledger(database) == ["1|applied"]
    assert (
        database.psql(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attname = 'note'"
        )
        == "1"
    )
    assert SECRET not in "".join(run.lines)


def test_lock_blocked_names_the_session_holding_the_lock_not_an_older_idle_transaction(
    database: Database, write_migrations: Files, sessions: Callable[[str, str], Session]
) -> None:
    database.psql("CREATE TABLE busy (id int); CREATE TABLE elsewhere (id int)")
    # Older than the blocker and idle in its transaction, but on another table: it blocks nothing.
    bystander = sessions("idle-bystander", "SELECT count(*) FROM elsewhere;")
    blocker = sessions("report-job", f"SELECT '{SECRET}' FROM busy;")
    directory = write_migrations({"0001_alter.sql": "ALTER TABLE busy ADD COLUMN note text;\n"})
    # Long enough for the sample taken while the statement waits (0.5 s in, then every second).
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(directory),
        MIGRATOR_DDL_LOCK_TIMEOUT="3",
        MIGRATOR_LOCK_RETRY_BUDGET="0",
    )
    outcome = run_inprocess(["up"], env)
    assert outcome.code == EXIT_BLOCKED, outcome.stderr
    (blocked,) = [e for e in outcome.events() if e["event"] == "lock_blocked"]
    assert blocked["blockers_seen_waiting"] is True
    assert [(b["pid"], b["application_name"]) for b in blocked["blockers"]] == [(blocker.pid, "report-job")]  # type: ignore[union-attr]
    assert blocked["blockers"][0]["state"] == "idle in transaction"  # type: ignore[index]
    assert f"report-job (pid {blocker.pid}" in outcome.final_message
    assert "idle-bystander" not in outcome.stderr and str(bystander.pid) not in outcome.final_message
    assert "nothing recorded; safe to retry" in outcome.final_message
    assert "lock_retry" not in outcome.names()  # a budget of 0: no retry
    assert ledger(database) == [] and SECRET not in outcome.stderr


def test_a_blocker_of_another_role_is_named_by_pid_and_application_name(
    roles: Roles, write_migrations: Files
) -> None:
    """As in production: the API's role holds the lock, the owner's `up` cannot see its state
    (no pg_read_all_stats), and still names it."""
    first = {"0001_busy.sql": "CREATE TABLE busy (id int);\n"}
    owner_env = migrator_env(roles.url(roles.owner), MIGRATIONS_DIR=str(write_migrations(first)))
    assert run_inprocess(["up"], owner_env).code == 0
    roles.database.psql(f'GRANT SELECT ON busy TO "{roles.app}"')
    directory = write_migrations({**first, "0002_alter.sql": "ALTER TABLE busy ADD COLUMN note text;\n"})
    loop = asyncio.new_event_loop()
    api = loop.run_until_complete(
        asyncpg.connect(roles.url(roles.app), server_settings={"application_name": "kata-api"})
    )
    try:
        loop.run_until_complete(api.execute(f"BEGIN; SELECT '{SECRET}' FROM busy"))
        env = {**owner_env, "MIGRATIONS_DIR": str(directory), "MIGRATOR_DDL_LOCK_TIMEOUT": "3"}
        outcome = run_inprocess(["up", "--lock-retry-budget", "0"], env)
        pid = api.get_server_pid()
    finally:
        loop.run_until_complete(api.close())
        loop.close()
    assert outcome.code == EXIT_BLOCKED, outcome.stderr
    hidden = "state hidden: another role's session (pg_read_all_stats shows it)"
    assert f"kata-api (pid {pid}, {hidden})" in outcome.final_message
    assert ledger(roles.database) == ["1|applied"] and SECRET not in outcome.stderr


def test_a_blocked_no_transaction_file_keeps_the_statements_before_and_records_nothing(
    database: Database, write_migrations: Files, sessions: Callable[[str, str], Session]
) -> None:
    database.psql("CREATE TABLE busy (id int)")
    blocker = sessions("report-job", "SELECT count(*) FROM busy;")
    sql = NO_TX + "CREATE TABLE IF NOT EXISTS first_done (id int);\nALTER TABLE busy ADD COLUMN note text;\n"
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(write_migrations({"0001_two.sql": sql})),
        MIGRATOR_DDL_LOCK_TIMEOUT="0.3",
        MIGRATOR_LOCK_RETRY_BUDGET="1",
    )
    outcome = run_inprocess(["up"], env)
    assert outcome.code == EXIT_BLOCKED, outcome.stderr
    assert "0001_two.sql blocked by other sessions' locks at line 3" in outcome.final_message
    assert "the ones before it stay applied" in outcome.final_message
    assert table_exists(database, "first_done") and ledger(database) == []
    # Every attempt ran the file from its top: the first statement each time, the second blocked.
    attempts = outcome.names().count("migration_started")
    assert attempts == outcome.names().count("lock_blocked") >= 1
    # 0.3 s is over before the first sample (0.5 s in): the blocker is found among the
    # transactions already open when the statement started.
    blocked = [e for e in outcome.events() if e["event"] == "lock_blocked"]
    assert all(
        e["blockers_seen_waiting"] is False and names_blocker(e, blocker, "report-job") for e in blocked
    )


def test_the_guard_expects_the_ddl_lock_timeout_again_after_a_concurrent_statement(
    database: Database, write_migrations: Files
) -> None:
    # The concurrent statement runs with MIGRATOR_CONCURRENT_WAIT_TIMEOUT; a statement after it
    # that sets lock_timeout to that value is still a changed session.
    sql = (
        NO_TX + "CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n"
        "SELECT set_config('lock_timeout', '120s', false);\n"
    )
    env = migrator_env(
        database.url,
        MIGRATIONS_DIR=str(write_migrations({"0001_cic.sql": sql})),
        MIGRATOR_CONCURRENT_WAIT_TIMEOUT="120",
    )
    outcome = run_inprocess(["up"], env)
    assert outcome.code == 5, outcome.stderr
    assert "0001_cic.sql failed at line 4" in outcome.final_message
    assert "changed lock_timeout or statement_timeout" in outcome.final_message


@pytest.mark.parametrize(
    ("statement", "concurrent"),
    [
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x)", True),
        ("create unique index concurrently i on t (x)", True),
        ("-- build it\nCREATE /* no lock */ INDEX\n  CONCURRENTLY i ON t (x)", True),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", True),
        ("REINDEX INDEX CONCURRENTLY i", True),
        ("REINDEX (VERBOSE) TABLE CONCURRENTLY t", True),
        ("CREATE INDEX i ON t (x)", False),
        ("DROP INDEX i", False),
        ("REINDEX TABLE t", False),
        ("ALTER TABLE t ADD COLUMN concurrently int", False),
        ("SELECT 'CREATE INDEX CONCURRENTLY'", False),
    ],
)
def test_only_the_concurrently_commands_get_the_concurrent_wait_bound(
    statement: str, concurrent: bool
) -> None:
    assert waits_for_old_transactions(statement) is concurrent


def test_the_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=30.0)
    assert [backoff.pause(n, 0.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [round(backoff.pause(n, 0.999999), 3) for n in range(1, 8)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]


def attempts_within_budget(
    monkeypatch: pytest.MonkeyPatch, budget: float, attempt_s: float, draw: float
) -> int:
    """How many attempts ContentionRetry makes before exit 11 when every attempt waits `attempt_s`
    for its lock and the jitter always draws `draw`: the real loop on a virtual clock."""
    now = [0.0]
    attempts = [0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(contention, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(contention, "asyncio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(contention, "random", SimpleNamespace(random=lambda: draw))
    migration = Migration(1, "blocked", "0001_blocked.sql", "", True, "ALTER TABLE t ADD c int")

    async def attempt() -> None:
        attempts[0] += 1
        now[0] += attempt_s
        raise Contention(migration, 1, "lock timeout", (), seen_waiting=True, waited=attempt_s)

    with pytest.raises(BlockedByLocks):
        asyncio.run(ContentionRetry(budget, EventLog(io.StringIO())).apply(attempt))
    return attempts[0]


def test_the_docs_give_the_attempts_the_default_budget_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """README.md and docs/migrator.md: with the 10 s DDL lock timeout the 300 s budget allows this
    many attempts, the fewest with the longest pauses the jitter can draw, the most with the
    shortest."""
    budget, attempt_s = float(LOCK_RETRY_BUDGET.default or ""), float(DDL_LOCK_TIMEOUT.default or "")
    fewest = attempts_within_budget(monkeypatch, budget, attempt_s, 1 - 2**-53)
    most = attempts_within_budget(monkeypatch, budget, attempt_s, 0.0)
    assert (fewest, most) == (11, 15)
    for document in ("README.md", "docs/migrator.md"):
        assert f"{fewest} to {most} attempts" in " ".join((REPO / document).read_text().split()), document


def test_a_blocker_is_described_by_what_pg_stat_activity_shows_never_its_query() -> None:
    seen = Blocker(4242, "report-job", "idle in transaction", 75.4, "ClientRead")
    assert (
        seen.describe()
        == "report-job (pid 4242, idle in transaction, transaction open 75 s, waiting on ClientRead)"
    )
    hidden = Blocker(77, "kata-api", None, None, None)  # another role's session, no pg_read_all_stats
    assert (
        hidden.describe()
        == "kata-api (pid 77, state hidden: another role's session (pg_read_all_stats shows it))"
    )
    assert Blocker(0, None, None, None, None).describe() == "a prepared transaction (see pg_prepared_xacts)"
