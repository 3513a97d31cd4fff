"""`kata-migrate`'s command line: the parser and its `--help`, built from the verbs' records
(migrator/verbs.py) and the option table (migrator/settings.py), and the settings one invocation
runs with, read through it."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

from migrator.errors import EXIT_CODES, UsageError
from migrator.settings import COMMON, PROGRAM, MigratorSettings
from migrator.termination import TERMINATION_LOG_ENV
from migrator.verbs import BY_NAME, DEFAULT, VERBS
from pgconn.config import Option, add_flags
from pgconn.settings import DATABASE_OPTIONS

# Every setting, each once: the database's, every verb's, then each verb's own.
OPTIONS: Final[tuple[Option[Any], ...]] = tuple(
    dict.fromkeys([*DATABASE_OPTIONS, *COMMON, *(o for verb in VERBS for o in verb.options)])
)

ROLLBACK_HELP: Final = (
    "A database migrated past this image (a rollback) is not drift: up, wait, verify, status and plan log "
    "ledger_ahead and go on while the live schema holds what this image's migrations create; up, wait, "
    "verify and status --exit-code exit 6 when a newer migration removed or changed something this image "
    "needs (roll forward instead)."
)


def epilog() -> str:
    """The verbs with an example each, the environment, and the exit codes, from their tables."""
    lines = [f"commands (default: {DEFAULT.name}):"]
    for verb in VERBS:
        lines.append(f"  {verb.usage:<18} {verb.summary}")
        lines.append(f"  {'':<18}   {PROGRAM} {verb.example}")
    settings = ", ".join([*(o.env for o in OPTIONS), TERMINATION_LOG_ENV, "POD_NAME"])
    lines += ["", textwrap.fill(f"settings (environment): {settings}.", 100, subsequent_indent="  ")]
    lines.append("exit codes:")
    lines += [f"  {code:<9} {meaning}" for code, meaning in EXIT_CODES.items()]
    lines += ["", textwrap.fill(ROLLBACK_HELP, 100)]
    return "\n".join(lines) + "\n"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{PROGRAM} --help`")


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    add_flags(common, COMMON)
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Apply kata-context's SQL migrations exactly once (Kubernetes Job or laptop).",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = ", ".join(verb.name for verb in VERBS)
    parsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", help=f"{names}: below", parser_class=ArgumentParser
    )
    for verb in VERBS:
        verb.add_to(parsers, common)
    return parser


def load_settings(argv: Sequence[str], env: Mapping[str, str], *, tty: bool) -> MigratorSettings:
    """The settings of one invocation: its verb and arguments from `argv`, then flags over
    environment for each setting the verb takes."""
    args = build_parser().parse_args(with_default_command(argv))
    return MigratorSettings.load(args, env, tty=tty, options=BY_NAME[args.command].options)


def with_default_command(argv: Sequence[str]) -> list[str]:
    """No command means `up`; `--help` alone still shows the top-level help."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return [DEFAULT.name, *argv]
    return list(argv)
