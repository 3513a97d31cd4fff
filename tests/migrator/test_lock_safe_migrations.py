"""Migrations 0002-0006 on a database that already holds rows: the fork rule, and every
no-transaction file failing midway on purpose, then applied by a plain re-run once fixed."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.migrator.conftest import (
    FINAL_CHECKS,
    FINAL_INDEXES,
    MIGRATIONS,
    Events,
    check_constraints,
    ledger,
    migrator_env,
    open_writer,
    run_inprocess,
    secondary_indexes,
    start_process,
)
from tests.schema.conftest import LATEST

PARENT = "00000000-0000-0000-0000-00000000000a"
CHILD = "00000000-0000-0000-0000-00000000000b"

ALL_APPLIED = [f"{v}|applied" for v in range(1, LATEST + 1)]


def apply_up_to(db: Database, tmp_path: Path, version: int) -> None:
    """Apply the shipped migrations 1..version only, as an older image would have."""
    folder = tmp_path / f"up_to_{version}"
    folder.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if int(path.name.split("_", 1)[0]) <= version:
            (folder / path.name).write_bytes(path.read_bytes())
    outcome = run_inprocess(["up", "--migrations", str(folder)], migrator_env(db.url))
    assert outcome.code == 0, outcome.stderr


def up(db: Database, **settings: str) -> tuple[int, str, list[str]]:
    """`up` with the shipped migrations: exit code, final message, and the server notices."""
    outcome = run_inprocess(["up"], migrator_env(db.url, **settings))
    notices = [str(e.get("msg")) for e in outcome.events() if e["event"] == "server_notice"]
    return outcome.code, outcome.final_message, notices


def test_hard_deleting_a_forked_parent_keeps_the_fork_with_its_version(database: Database) -> None:
    assert up(database)[0] == 0
    database.psql(f"INSERT INTO contexts (id) VALUES ('{PARENT}')")
    database.psql(f"INSERT INTO contexts (id, parent_id, fork_version) VALUES ('{CHILD}', '{PARENT}', 4)")
    database.psql(f"DELETE FROM contexts WHERE id = '{PARENT}'")
    assert (
        database.psql(
            f"SELECT coalesce(parent_id::text, 'null') || ' ' || fork_version "
            f"FROM contexts WHERE id = '{CHILD}'"
        )
        == "null 4"
    )


def test_a_fork_must_record_the_version_it_forked_at(database: Database) -> None:
    assert up(database)[0] == 0
    database.psql(f"INSERT INTO contexts (id) VALUES ('{PARENT}')")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        database.psql(f"INSERT INTO contexts (id, parent_id) VALUES ('{CHILD}', '{PARENT}')")
    assert 'violates check constraint "contexts_fork_pair"' in failed.value.stderr


def test_a_database_holding_orphaned_forks_migrates(database: Database, tmp_path: Path) -> None:
    apply_up_to(database, tmp_path, 1)
    # As the application leaves them: a fork whose parent was hard-deleted, and a live fork.
    database.psql(f"INSERT INTO contexts (id) VALUES ('{PARENT}')")
    database.psql(f"INSERT INTO contexts (id, parent_id, fork_version) VALUES ('{CHILD}', '{PARENT}', 2)")
    database.psql("INSERT INTO contexts (parent_id, fork_version) VALUES (NULL, 7)")
    assert up(database)[0] == 0
    assert ledger(database) == ALL_APPLIED
    assert check_constraints(database) == FINAL_CHECKS


@dataclass(frozen=True)
class BadRow:
    """A row that breaks one constraint, put in before the file that adds it, and its fix."""

    file_version: int
    constraint: str
    table: str
    insert: str
    fix: str


BAD_ROWS = {
    # The second of 0003's four VALIDATEs fails: the first one has already committed.
    "negative total_tokens": BadRow(
        3,
        "contexts_total_tokens_non_negative",
        "contexts",
        f"INSERT INTO contexts (id, total_tokens) VALUES ('{PARENT}', -5)",
        "UPDATE contexts SET total_tokens = 0 WHERE total_tokens < 0",
    ),
    # 0003's last statement fails: everything before it stays applied.
    "negative token_count": BadRow(
        3,
        "messages_token_count_non_negative",
        "messages",
        f"INSERT INTO contexts (id) VALUES ('{PARENT}'); INSERT INTO messages "
        f"(context_id, version, role, content, token_count) VALUES ('{PARENT}', 1, 'user', 'x', -1)",
        "UPDATE messages SET token_count = 0 WHERE token_count < 0",
    ),
    "fork without its version": BadRow(
        4,
        "contexts_fork_pair",
        "contexts",
        f"INSERT INTO contexts (id) VALUES ('{PARENT}'); "
        f"INSERT INTO contexts (id, parent_id) VALUES ('{CHILD}', '{PARENT}')",
        "UPDATE contexts SET fork_version = 0 WHERE parent_id IS NOT NULL AND fork_version IS NULL",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_failed_validate_names_the_rows_and_a_rerun_after_the_fix_completes(
    database: Database, tmp_path: Path, case: str
) -> None:
    bad = BAD_ROWS[case]
    apply_up_to(database, tmp_path, bad.file_version - 1)
    database.psql(bad.insert)

    code, message, _ = up(database)
    assert code == 5, message
    assert f'check constraint "{bad.constraint}" of relation "{bad.table}" is violated' in message
    assert "(SQLSTATE 23514)" in message
    # Midway: the constraint is in place, NOT VALID, and the file is not recorded.
    assert f"{bad.constraint}:false:" in "\n".join(check_constraints(database))
    assert ledger(database) == [f"{v}|applied" for v in range(1, bad.file_version)]
    # The query in the message finds exactly the bad row.
    found = re.search(
        r"find the rows that break it with: (SELECT .+? WHERE NOT \(.+?\)) \(no-transaction", message
    )
    assert found, message
    assert len(database.psql(found[1]).splitlines()) == 1

    database.psql(bad.fix)
    code, message, _ = up(database)
    assert code == 0, message
    assert ledger(database) == ALL_APPLIED
    assert check_constraints(database) == FINAL_CHECKS
    assert secondary_indexes(database) == FINAL_INDEXES


@dataclass(frozen=True)
class IndexBuild:
    file_version: int
    table: str
    index: str


INDEX_BUILDS = {
    "0002 btree on contexts": IndexBuild(2, "contexts", "contexts_deleted_at_idx"),
    "0005 hnsw on messages": IndexBuild(5, "messages", "messages_embedding_idx"),
    "0006 partial btree on contexts": IndexBuild(6, "contexts", "contexts_parent_id_idx"),
}


@pytest.mark.parametrize("stopped_after_rename", [False, True], ids=["invalid", "invalid-and-renamed"])
@pytest.mark.parametrize("case", sorted(INDEX_BUILDS))
def test_a_failed_concurrent_build_is_rebuilt_by_a_rerun(
    database: Database, tmp_path: Path, case: str, stopped_after_rename: bool
) -> None:
    build = INDEX_BUILDS[case]
    apply_up_to(database, tmp_path, build.file_version - 1)
    with open_writer(database, build.table):
        code, message, _ = up(database, MIGRATOR_CONCURRENT_WAIT_TIMEOUT="1", MIGRATOR_LOCK_RETRY_BUDGET="0")
    assert code == 11, message
    assert "blocked by other sessions' locks" in message and "open-writer" in message
    assert f"{build.index}:false:" in "\n".join(secondary_indexes(database))
    assert ledger(database) == [f"{v}|applied" for v in range(1, build.file_version)]
    if stopped_after_rename:
        # As a run stopped between moving the leftover aside and dropping it leaves things.
        database.psql(f"ALTER INDEX {build.index} RENAME TO {build.index}_invalid")

    code, message, notices = up(database)
    assert code == 0, message
    assert ledger(database) == ALL_APPLIED
    assert secondary_indexes(database) == FINAL_INDEXES
    assert check_constraints(database) == FINAL_CHECKS
    moved = any(f"dropping invalid index {build.index}" in n for n in notices)
    assert moved is not stopped_after_rename


@pytest.mark.parametrize("case", sorted(INDEX_BUILDS))
def test_a_concurrent_build_blocked_by_an_old_transaction_is_retried_from_the_top_of_its_file(
    database: Database, tmp_path: Path, case: str
) -> None:
    build = INDEX_BUILDS[case]
    apply_up_to(database, tmp_path, build.file_version - 1)
    env = migrator_env(
        database.url,
        # The build's wait has its own bound: a DDL lock timeout of 10 minutes does not hold it.
        MIGRATOR_DDL_LOCK_TIMEOUT="600",
        MIGRATOR_CONCURRENT_WAIT_TIMEOUT="1",
        MIGRATOR_LOCK_RETRY_BUDGET="600",
    )
    with open_writer(database, build.table):
        writer = int(database.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'open-writer'"))
        run = Events(start_process(["up"], env))
        (blocked, *_) = run.wait_for("lock_blocked")
    assert run.finish() == 0, "".join(run.lines)
    assert str(blocked["file"]).startswith(f"{build.file_version:04d}_")
    assert {"pid": writer, "application_name": "open-writer"}.items() <= blocked["blockers"][0].items()  # type: ignore[index]
    # The failed build left its index INVALID; the retry ran the file from the top, whose first
    # statements move such a leftover aside, where `CREATE INDEX ... IF NOT EXISTS` would skip it.
    notices = [str(e["msg"]) for e in run.named("server_notice")]
    assert any(f"dropping invalid index {build.index}" in n for n in notices), notices
    assert ledger(database) == ALL_APPLIED
    assert secondary_indexes(database) == FINAL_INDEXES
