"""The session guard: after each statement of a migration, the server itself checks that the
migrator's transaction, lock, role and timeouts are as the migrator set them, and raises before
anything is committed when a statement changed them in a way the text did not show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

from migrator.limits import to_ms
from migrator.lock import HELD_HERE
from schema.ledger import quote_literal

# The SQLSTATE the guard raises (class KM: "kata migrator"); PL/pgSQL accepts any 5-character code.
SESSION_CHANGED: Final = "KM001"
# ...and this one when the transaction itself ended: what ran before may be committed.
TRANSACTION_ENDED: Final = "KM002"
# How the splitter reads a file (schema/splitter.py): a backslash in '...' is a plain character, and
# the text reaches the server as the UTF-8 it was read as. Set for the session before the first
# file, so that a database or role whose default is standard_conforming_strings = off cannot make
# the server read the files otherwise (asyncpg always connects with client_encoding UTF8).
READ_AS_SPLIT: Final = "SET standard_conforming_strings = on"
# The file's transaction began in an earlier query than the statement being checked; a transaction
# that began in the statement's own query means the statement ended the migrator's (a marker
# setting would not do: RESET ALL clears it too).
TRANSACTION_BEGAN_HERE: Final = "transaction_timestamp() = statement_timestamp()"


# search_path is not guarded, on purpose. The migrator pins it at the start of every file
# (migrator/placement.py), so a file's own `SET search_path` cannot move the next file, and `up`
# compares the catalog with the snapshot after applying, so objects a file placed elsewhere are
# exit 6 at once, naming them. A guard would only add refusals of files that set search_path on
# purpose for a statement or two (a function body, another schema's object), which the rules allow.
@dataclass(frozen=True)
class SessionGuard:
    """What the migrator's session must still be after each statement."""

    session_user: str
    current_user: str
    lock_timeout_ms: int
    statement_timeout_ms: int

    def check_sql(self, *, transactional: bool) -> str:
        """A DO block that raises naming what changed; nothing when all is intact."""
        checks = [
            (
                SESSION_CHANGED,
                f"NOT {HELD_HERE}",
                "released the lock (pg_advisory_unlock*): another migrator could run at once",
            ),
            (
                SESSION_CHANGED,
                f"session_user <> {quote_literal(self.session_user)} "
                f"OR current_user <> {quote_literal(self.current_user)}",
                "changed the role (SET ROLE, SET SESSION AUTHORIZATION or set_config('role', ...))",
            ),
            (
                SESSION_CHANGED,
                f"{changed('lock_timeout', self.lock_timeout_ms)} OR "
                f"{changed('statement_timeout', self.statement_timeout_ms)}",
                "changed lock_timeout or statement_timeout (RESET ALL, SET, set_config): set them with "
                "MIGRATOR_DDL_LOCK_TIMEOUT and MIGRATOR_STATEMENT_TIMEOUT instead",
            ),
            (
                SESSION_CHANGED,
                "current_setting('standard_conforming_strings') <> 'on' "
                "OR current_setting('client_encoding') <> 'UTF8'",
                "changed standard_conforming_strings or client_encoding, so the server would read the "
                "following statements otherwise than the migrator split and checked them: remove the "
                "change",
            ),
        ]
        if transactional:
            ended = (
                TRANSACTION_ENDED,
                TRANSACTION_BEGAN_HERE,
                "ended the migrator's transaction (COMMIT or ROLLBACK); check the schema before a rerun",
            )
            checks.insert(0, ended)
        body = " ".join(
            f"IF {condition} THEN RAISE EXCEPTION USING ERRCODE = '{code}', "
            f"MESSAGE = {quote_literal('the statement ' + problem)}; END IF;"
            for code, condition, problem in checks
        )
        return f"DO $kata_guard$ BEGIN {body} END $kata_guard$"


def changed(setting: str, milliseconds: int) -> str:
    # current_setting, not pg_settings: that view builds every setting, 3 ms a statement.
    return f"current_setting('{setting}')::interval <> interval '{milliseconds} ms'"


async def read_guard(conn: asyncpg.Connection, lock_timeout: float, statement_timeout: float) -> SessionGuard:
    """The session as it is before the first file runs (one round trip per run)."""
    row = await conn.fetchrow("SELECT session_user::text AS s, current_user::text AS c")
    assert row is not None
    return SessionGuard(row["s"], row["c"], to_ms(lock_timeout), to_ms(statement_timeout))
