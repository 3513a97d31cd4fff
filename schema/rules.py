"""What a migration file may not contain, found before anything runs: statements that would end
the migrator's transaction, change its role or settings, release its lock, change how the server
reads the rest of the file, or wait for a client that is not there. Pure text work."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from schema.catalog import CatalogError, Migration
from schema.splitter import Statement, code_tokens, leading_words

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
COPY_CLIENT: Final = (
    "COPY FROM STDIN and COPY TO STDOUT need a client that streams the data, as psql does; the "
    "migrator sends statements only, so COPY FROM STDIN would wait for data forever while holding "
    "the lock (neither a cancel nor statement_timeout ends that wait) and COPY TO STDOUT would send "
    "the rows to nowhere; write the rows as INSERT ... VALUES or INSERT ... SELECT, or COPY FROM a "
    "file on the database server"
)
META_COMMAND: Final = (
    "a backslash outside a string, quoted name or comment starts a psql meta-command (\\i, \\set, "
    "\\copy, \\gexec, ...): only psql understands them, PostgreSQL rejects them, and the migrator "
    "sends the file to PostgreSQL; write the SQL the command stands for instead"
)
LEXING: Final = (
    "standard_conforming_strings and client_encoding decide where the server sees a string, and so a "
    "statement, end: changed by a file, its later statements would run otherwise than the migrator "
    "split and checked them (a COMMIT hidden in a string could run, a text could be stored garbled); "
    "remove it (refused wherever the name appears in a statement, also in a string, a comment or "
    "set_config: the migrator keeps standard_conforming_strings on and client_encoding UTF8)"
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
    # SET NAMES is SET client_encoding under its SQL-standard name.
    **{("set", *scope, "names"): LEXING for scope in ((), ("session",), ("local",))},
}
HEAD_WORDS: Final = max(len(head) for head in FORBIDDEN_HEADS)
# Textual, even inside a function body, a string or a comment: no migration has a reason to name
# them, and refusing too much is safer than reading a statement as the server would not.
TEXTUAL: Final = (
    (re.compile(r"pg_advisory_unlock", re.IGNORECASE), UNLOCK),
    (re.compile(r"standard_conforming_strings|client_encoding", re.IGNORECASE), LEXING),
)
CLIENT_STREAMS: Final = frozenset({"stdin", "stdout"})


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
        refused = refusal(statement)
        if refused is not None:
            at, reason = refused
            line, column = migration.lines.line_column(statement.offset + at)
            found.append(Violation(line, column, _summary(statement.text[at:]), reason))
    return tuple(found)


def refusal(statement: Statement) -> tuple[int, str] | None:
    """Where in the statement's text a refused part starts, and why it may not run; None when the
    statement may run."""
    words = leading_words(statement.text, HEAD_WORDS)
    for length in range(len(words), 0, -1):
        reason = FORBIDDEN_HEADS.get(words[:length])
        if reason is not None:
            return 0, reason
    if words[:1] == ("copy",) and copies_with_client(statement.text):
        return 0, COPY_CLIENT
    for pattern, reason in TEXTUAL:
        if pattern.search(statement.text):
            return 0, reason
    backslash = meta_command_at(statement.text)
    return None if backslash is None else (backslash, META_COMMAND)


def copies_with_client(text: str) -> bool:
    """`COPY ... FROM STDIN` or `COPY ... TO STDOUT`, whatever the spelling, comments or query
    between the words: the file name after FROM or TO, outside parentheses, is the client."""
    previous = ""
    for token in code_tokens(text):
        if token.parens:
            continue
        word = token.text.lower() if token.kind == "word" else ""
        if previous in ("from", "to") and word in CLIENT_STREAMS:
            return True
        previous = word
    return False


def meta_command_at(text: str) -> int | None:
    """The offset of the first backslash outside strings, quoted names, dollar quotes and comments:
    PostgreSQL has no use for one there, psql reads it as a meta-command."""
    if "\\" not in text:  # the common case, without reading the statement token by token
        return None
    for token in code_tokens(text):
        if token.kind == "other" and "\\" in token.text:
            return token.offset + token.text.index("\\")
    return None


def check_migrations(migrations: Iterable[Migration]) -> None:
    """ForbiddenStatement for the first refused statement of the first file that has one."""
    for migration in migrations:
        found = violations(migration)
        if found:
            raise ForbiddenStatement(migration.filename, found[0])


def _summary(text: str) -> str:
    first_line = text.splitlines()[0] if text else ""
    return first_line if len(first_line) <= 60 else first_line[:57] + "..."
