"""The verbs of `kata-migrate`, one record each: its name, what it does, an example, whether it
writes, its own arguments and settings, and its function. `--help`, the parser, the dispatch and
the privilege check all read this one table; adding a verb is a function (migrator/commands.py) and
a record here."""

from __future__ import annotations

import argparse
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from migrator import commands
from migrator.context import Context
from migrator.errors import UsageError
from migrator.settings import ROLE_OPTIONS, WAIT_TIMEOUT
from pgconn.config import Option, add_flags


@dataclass(frozen=True)
class Argument:
    """One of a verb's own arguments: a `--flag` that is on or off, or a positional whose text
    `parse` turns into its value (a UsageError, exit 2, when it cannot)."""

    name: str  # "--json", or the attribute of a positional: "version"
    help: str
    metavar: str | None = None
    parse: Callable[[str], Any] = str

    @property
    def shown(self) -> str:
        return self.metavar or self.name

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.name.startswith("--"):
            parser.add_argument(self.name, action="store_true", help=self.help)
        else:
            parser.add_argument(self.name, metavar=self.metavar, type=self.parse, help=self.help)


@dataclass(frozen=True)
class Verb:
    """One verb: what `--help` says of it, what it takes, and what runs it."""

    name: str
    summary: str  # one line of `--help`
    example: str  # what follows `kata-migrate` in `--help`'s example
    run: Callable[[Context], Awaitable[int]]
    # Creates, records or alters the application's tables: runs as the schema owner role, on a
    # primary that takes writes (migrator/privileges.py, migrator/session.py). Others only read.
    writes: bool = False
    arguments: tuple[Argument, ...] = ()
    options: tuple[Option[Any], ...] = ()  # its settings beyond every verb's (settings.COMMON)

    @property
    def usage(self) -> str:
        """`baseline VERSION`: the name and its positionals."""
        positionals = [a.shown for a in self.arguments if not a.name.startswith("--")]
        return " ".join([self.name, *positionals])

    def add_to(self, parsers: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
        parser = parsers.add_parser(self.name, parents=[common], description=self.summary)
        for argument in self.arguments:
            argument.add_to(parser)
        add_flags(parser, self.options)


def parse_version(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
        raise UsageError(f"baseline VERSION must be a positive integer, not {text!r}")
    return int(text)


JSON: Final = Argument("--json", "print JSON on stdout")

VERBS: Final = (
    Verb(
        "up",
        "apply pending migrations, exactly once, under a lock; 6 on breaking drift (degraded: a warning)",
        "up --lock-timeout 300",
        commands.cmd_up,
        writes=True,
        arguments=(Argument("--json", "print the result (applied files, version) on stdout"),),
        options=ROLE_OPTIONS,
    ),
    Verb(
        "status",
        "show applied, pending and ahead-of-this-image migrations (--json for machines)",
        "status --json --exit-code",
        commands.cmd_status,
        arguments=(JSON, Argument("--exit-code", "exit 8 when pending, 6 on changed files or drift")),
    ),
    Verb(
        "plan",
        "print the SQL `up` would run; touches nothing",
        "plan > pending.sql",
        commands.cmd_plan,
        arguments=(Argument("--repair", "print the SQL `repair` would run instead"),),
    ),
    Verb(
        "verify",
        "exit 0 when all applied and unchanged, 6 on changed files or any drift, 8 when pending",
        "verify",
        commands.cmd_verify,
    ),
    Verb(
        "wait",
        "block until every migration of this image is applied (init containers); 6 on breaking drift",
        "wait --timeout 600",
        commands.cmd_wait,
        options=(WAIT_TIMEOUT,),
    ),
    Verb(
        "baseline",
        "record versions up to VERSION as applied without running them",
        "baseline 1",
        commands.cmd_baseline,
        writes=True,
        arguments=(Argument("version", "highest version to record, e.g. 1", "VERSION", parse_version),),
    ),
    Verb(
        "repair",
        "restore missing or INVALID indexes and constraints, lock-safe (`plan --repair` prints how)",
        "repair --ddl-lock-timeout 5",
        commands.cmd_repair,
        writes=True,
    ),
)
DEFAULT: Final = VERBS[0]  # `kata-migrate` alone, or with options only, is `kata-migrate up`
BY_NAME: Final = {verb.name: verb for verb in VERBS}
