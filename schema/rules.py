"""What a migration file may not contain, found before anything runs: statements that would end
the migrator's transaction, change its role or settings, or release its lock. Pure text work."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from schema.catalog import CatalogError, Migration
from schema.splitter import Statement, leading_words

TRANSACTION: Final = (
    "it would end or split the transaction the migrator opened for the file, so a later failure "
    "could no longer roll the whole file back; remove it: each file already runs in its own "
    "transaction (start the file with `-- migrate: no-transaction` for statements that cannot)"
)
SESSION: Final = (
    "it would change the session the migrator relies on (its role, its lock_timeout and "
    "statement_timeout); remove it: grant what the migrator's role needs instead, and set the "
    "timeouts with MIGRATOR_DDL_LOCK_TIMEOUT and MIGRATOR_STATEMENT_TIMEOUT"
)
UNLOCK: Final = (
    "releasing advisory locks would let a second migrator apply the same files at the same time; "
    "remove the call (the migrator releases its own lock when it ends)"
)
# Leading words -> why the statement is refused. A prefix matches when the statement starts with it.
FORBIDDEN_HEADS: Final[dict[tuple[str, ...], str]] = {
    **{
        (word,): TRANSACTION
        for word in ("begin", "commit", "end", "rollback", "abort", "savepoint", "release")
    },
    ("start", "transaction"): TRANSACTION,
    ("prepare", "transaction"): TRANSACTION,
    **{("set", *scope, "role"): SESSION for scope in ((), ("session",), ("local",))},
    **{("set", *scope, "session", "authorization"): SESSION for scope in ((), ("session",), ("local",))},
    ("reset", "all"): SESSION,
    ("reset", "role"): SESSION,
    ("reset", "session", "authorization"): SESSION,
    ("discard",): SESSION,
}
HEAD_WORDS: Final = max(len(head) for head in FORBIDDEN_HEADS)
ADVISORY_UNLOCK: Final = re.compile(r"pg_advisory_unlock", re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    """One statement a file may not contain: where it starts and why it is refused."""

    line: int
    column: int
    statement: str
    reason: str


class ForbiddenStatement(CatalogError):
    """A migration file holds a statement the migrator refuses to run (exit 2, nothing ran)."""

    def __init__(self, filename: str, violation: Violation) -> None:
        self.filename = filename
        self.violation = violation
        super().__init__(
            f"migration {filename} line {violation.line}, column {violation.column}: "
            f"`{violation.statement}` is not allowed in a migration: {violation.reason}; nothing was run"
        )


NUL: Final = (
    "PostgreSQL cannot take a NUL character in a query and would drop everything after it; "
    "remove it (a binary file saved as .sql?)"
)


def violations(migration: Migration) -> tuple[Violation, ...]:
    """Every refused statement of the file, in order."""
    found = []
    nul = migration.sql.find("\x00")
    if nul >= 0:
        found.append(Violation(*migration.lines.line_column(nul), "\\x00", NUL))
    for statement in migration.statements:
        reason = refusal(statement)
        if reason is not None:
            line, column = migration.lines.line_column(statement.offset)
            found.append(Violation(line, column, _summary(statement.text), reason))
    return tuple(found)


def refusal(statement: Statement) -> str | None:
    """Why this statement may not run in a migration, or None when it may."""
    words = leading_words(statement.text, HEAD_WORDS)
    for length in range(len(words), 0, -1):
        reason = FORBIDDEN_HEADS.get(words[:length])
        if reason is not None:
            return reason
    # Textual, even inside a function body or a string: no migration has a reason to call it.
    return UNLOCK if ADVISORY_UNLOCK.search(statement.text) else None


def check_migrations(migrations: Iterable[Migration]) -> None:
    """ForbiddenStatement for the first refused statement of the first file that has one."""
    for migration in migrations:
        found = violations(migration)
        if found:
            raise ForbiddenStatement(migration.filename, found[0])


def _summary(text: str) -> str:
    first_line = text.splitlines()[0] if text else ""
    return first_line if len(first_line) <= 60 else first_line[:57] + "..."
