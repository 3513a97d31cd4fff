"""Run the migrator in-process (fast) or as a real process (signals, concurrency, leaks)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from localpg.throwaway import SUPERUSER_PASSWORD
from migrator.cli import run
from migrator.lock import LOCK_CLASS, LOCK_OBJECT
from tests.conftest import Database
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "migrations"


@dataclass(frozen=True)
class Outcome:
    """What one migrator run produced."""

    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def names(self) -> list[str]:
        return [str(event["event"]) for event in self.events()]

    @property
    def final_message(self) -> str:
        return str(self.events()[-1].get("msg", ""))


def migrator_env(url: str | None, **extra: str) -> dict[str, str]:
    """A clean environment: only what we pass, so the caller's DATABASE_URL never leaks in. No
    termination message: a test run inside a pod (a CI runner) must not write the runner's."""
    env = {
        "MIGRATOR_CONNECT_TIMEOUT": "10",
        "MIGRATOR_LOG_FORMAT": "json",
        "POD_NAME": "test-pod",
        "MIGRATOR_TERMINATION_LOG": "",
    }
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def run_inprocess(args: list[str], env: Mapping[str, str]) -> Outcome:
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = run(args, env, stdout, stderr)
    return Outcome(code, stdout.getvalue(), stderr.getvalue(), time.monotonic() - started)


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, **env}


def start_process(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrator", *args],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


class Events:
    """A migrator process whose JSON events are read as they come, so the test can act on one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def named(self, name: str) -> list[dict[str, object]]:
        return [event for event in self.events() if event["event"] == name]

    def wait_for(self, name: str, count: int = 1) -> list[dict[str, object]]:
        wait_until(
            lambda: len(self.named(name)) >= count, 60, what=f"{count} {name} event(s)", process=self.process
        )
        return self.named(name)

    def finish(self) -> int:
        code = self.process.wait(timeout=120)
        self._reader.join(timeout=10)
        return code


def run_process(args: list[str], env: Mapping[str, str], timeout: float = 60) -> Outcome:
    started = time.monotonic()
    proc = start_process(args, env)
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err, time.monotonic() - started)


def ledger(db: Database) -> list[str]:
    """`version|kind` per ledger row; empty when the ledger table does not exist."""
    if db.psql("SELECT to_regclass('public.kata_schema_migrations') IS NULL") == "t":
        return []
    out = db.psql("SELECT version || '|' || kind FROM kata_schema_migrations ORDER BY version")
    return out.splitlines()


def psql_script(db: Database, sql: str) -> str:
    """Run `sql` as psql runs a file: each statement on its own (CREATE INDEX CONCURRENTLY
    included), stopping at the first error; returns what psql printed."""
    result = subprocess.run(
        [*db.server.psql_command(db.name), "-f", "-"],
        input=sql,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
    )
    return result.stdout.strip()


def table_exists(db: Database, name: str) -> bool:
    return db.psql(f"SELECT to_regclass('{name}') IS NOT NULL") == "t"


@pytest.fixture
def write_migrations(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """Write a migrations directory from {file name: SQL text or raw bytes}."""

    def write(files: dict[str, str | bytes]) -> Path:
        directory = tmp_path / "migrations"
        directory.mkdir(exist_ok=True)
        for name, content in files.items():
            path = directory / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, newline="")
        return directory

    return write


@contextlib.contextmanager
def open_writer(db: Database, table: str) -> Iterator[None]:
    """A transaction that has written to `table` and stays open: a concurrent index build waits
    for it (and gives up at the migrator's DDL lock timeout) after creating its INVALID index."""
    session = db.server.psql_session(db.name, application_name="open-writer")
    assert session.stdin is not None
    session.stdin.write(f"BEGIN;\nUPDATE {table} SET created_at = created_at;\n")
    session.stdin.flush()
    holding = (
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        f"WHERE a.application_name = 'open-writer' AND l.relation = '{table}'::regclass "
        "AND l.mode = 'RowExclusiveLock' AND l.granted"
    )
    try:
        wait_until(
            lambda: db.psql(holding) == "1", what=f"an open transaction writing {table}", process=session
        )
        yield
    finally:
        session.stdin.close()  # end of input: psql exits and the server rolls its transaction back
        session.wait(30)


@pytest.fixture
def lock_holder(database: Database) -> Iterator[None]:
    """Another session holding the migrator's advisory lock until the test ends."""
    holder = database.server.psql_session(database.name, application_name="sentinel-holder")
    assert holder.stdin is not None
    try:
        holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_CLASS}, {LOCK_OBJECT});\n")
        holder.stdin.flush()
        wait_until(
            lambda: (
                database.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1"
            ),
            what="the holder to take the lock",
        )
        yield
    finally:
        holder.stdin.close()  # psql ends its session at end of input, releasing the lock
        holder.wait(10)


# The non-unique indexes every migration leaves, valid: what 0001, 0002, 0005 and 0006 build.
FINAL_INDEXES = [
    "contexts_deleted_at_idx:true:CREATE INDEX contexts_deleted_at_idx ON public.contexts "
    "USING btree (deleted_at)",
    "contexts_parent_id_idx:true:CREATE INDEX contexts_parent_id_idx ON public.contexts "
    "USING btree (parent_id) WHERE (parent_id IS NOT NULL)",
    "messages_deleted_at_idx:true:CREATE INDEX messages_deleted_at_idx ON public.messages "
    "USING btree (deleted_at)",
    "messages_embedding_idx:true:CREATE INDEX messages_embedding_idx ON public.messages "
    "USING hnsw (embedding vector_cosine_ops)",
]


def secondary_indexes(db: Database) -> list[str]:
    """name:valid:definition of every non-unique index on the two tables (leftovers included)."""
    return db.psql(
        "SELECT indexrelid::regclass || ':' || indisvalid || ':' || pg_get_indexdef(indexrelid) "
        "FROM pg_index WHERE indrelid IN ('contexts'::regclass, 'messages'::regclass) "
        "AND NOT indisprimary AND NOT indisunique ORDER BY 1"
    ).splitlines()


FINAL_CHECKS = [
    "contexts_fork_pair:true:CHECK (((parent_id IS NULL) OR (fork_version IS NOT NULL)))",
    "contexts_latest_version_non_negative:true:CHECK ((latest_version >= 0))",
    "contexts_message_count_non_negative:true:CHECK ((message_count >= 0))",
    "contexts_total_tokens_non_negative:true:CHECK ((total_tokens >= 0))",
    "messages_token_count_non_negative:true:CHECK (((token_count IS NULL) OR (token_count >= 0)))",
]


def check_constraints(db: Database) -> list[str]:
    """name:validated:definition of every CHECK on the two tables."""
    return db.psql(
        "SELECT conname || ':' || convalidated || ':' || pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid IN ('contexts'::regclass, 'messages'::regclass) AND contype = 'c' ORDER BY 1"
    ).splitlines()
