"""`kata-migrate`'s command line and settings: the option table, the parser and its help, and the
frozen settings one invocation runs with."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from migrator import grants
from migrator.errors import EXIT_CODES, UsageError
from migrator.runner import RunOptions
from migrator.termination import TERMINATION_LOG_ENV
from pgconn.config import Option, Sources, add_flags, integer_between, memory_between, parse_seconds
from pgconn.logs import chosen_format, log_format_option
from pgconn.settings import DATABASE_OPTIONS, DATABASE_POOLED, MIGRATIONS_DIR, DatabaseSettings

PROGRAM: Final = "kata-migrate"

LOCK_TIMEOUT: Final = Option(
    "lock_timeout",
    "MIGRATOR_LOCK_TIMEOUT",
    "--lock-timeout",
    "120",
    parse_seconds,
    "seconds to wait for another migrator's lock before exit 7",
    "SECONDS",
)
CONNECT_TIMEOUT: Final = Option(
    "connect_timeout",
    "MIGRATOR_CONNECT_TIMEOUT",
    "--connect-timeout",
    "60",
    parse_seconds,
    "seconds to keep retrying the connection before exit 3",
    "SECONDS",
)
STATEMENT_TIMEOUT: Final = Option(
    "statement_timeout",
    "MIGRATOR_STATEMENT_TIMEOUT",
    "--statement-timeout",
    "3600",
    parse_seconds,
    "statement_timeout for each migration statement (0: none)",
    "SECONDS",
)
DDL_LOCK_TIMEOUT: Final = Option(
    "ddl_lock_timeout",
    "MIGRATOR_DDL_LOCK_TIMEOUT",
    "--ddl-lock-timeout",
    "10",
    parse_seconds,
    "lock_timeout for each migration statement (0: none)",
    "SECONDS",
)
# A CONCURRENTLY statement waits for older transactions (each in turn, each wait bounded by this
# lock_timeout) under SHARE UPDATE EXCLUSIVE, which stops neither reads nor writes: it can wait far
# longer than DDL may queue. 5 minutes lets a busy database's reports and batch transactions finish,
# and with a retry (MIGRATOR_LOCK_RETRY_BUDGET) stays well inside the Job's activeDeadlineSeconds.
CONCURRENT_WAIT_TIMEOUT: Final = Option(
    "concurrent_wait_timeout",
    "MIGRATOR_CONCURRENT_WAIT_TIMEOUT",
    "--concurrent-wait-timeout",
    "300",
    parse_seconds,
    "lock_timeout for CREATE/DROP INDEX and REINDEX ... CONCURRENTLY, which wait for older "
    "transactions (0: none); expiry is retried like a lock timeout",
    "SECONDS",
)
LOCK_RETRY_BUDGET: Final = Option(
    "lock_retry_budget",
    "MIGRATOR_LOCK_RETRY_BUDGET",
    "--lock-retry-budget",
    "300",
    parse_seconds,
    "seconds `up` (and `repair`) keep retrying a migration blocked by other sessions' locks (rolled "
    "back, backoff, again) before exit 11 (0: no retry)",
    "SECONDS",
)
# pgvector's HNSW graph needs about 8 KB per 1536-dimension embedding in memory (bench/RESULTS.md):
# 256MB holds about 36,000 and fits a small managed database; 1 worker uses both cores of a 2-vCPU
# server for a shorter time, where 2 gained nothing and competed with the application.
MAINTENANCE_WORK_MEM: Final = Option(
    "maintenance_work_mem",
    "MIGRATOR_MAINTENANCE_WORK_MEM",
    "--maintenance-work-mem",
    "256MB",
    # PostgreSQL accepts 1MB to 2TB; above 64GB is a typo on any server this runs on.
    memory_between(1024, 64 * 1024**2),
    "maintenance_work_mem for no-transaction files (index builds), e.g. 256MB or 1GB",
    "SIZE",
)
MAX_PARALLEL_MAINTENANCE_WORKERS: Final = Option(
    "max_parallel_maintenance_workers",
    "MIGRATOR_MAX_PARALLEL_MAINTENANCE_WORKERS",
    "--max-parallel-maintenance-workers",
    "1",
    integer_between(0, 1024),
    "max_parallel_maintenance_workers for no-transaction files (0: the build runs alone)",
    "N",
)
WAIT_TIMEOUT: Final = Option(
    "wait_timeout",
    "MIGRATOR_WAIT_TIMEOUT",
    "--timeout",
    "300",
    parse_seconds,
    "seconds `wait` waits for pending migrations before exit 8",
    "SECONDS",
)
LOG_FORMAT: Final = log_format_option("MIGRATOR_LOG_FORMAT")
# Every command takes these; `--timeout` belongs to `wait` alone.
COMMON: Final = (
    MIGRATIONS_DIR,
    DATABASE_POOLED,
    LOG_FORMAT,
    LOCK_TIMEOUT,
    CONNECT_TIMEOUT,
    STATEMENT_TIMEOUT,
    DDL_LOCK_TIMEOUT,
    CONCURRENT_WAIT_TIMEOUT,
    LOCK_RETRY_BUDGET,
    MAINTENANCE_WORK_MEM,
    MAX_PARALLEL_MAINTENANCE_WORKERS,
)
OPTIONS: Final[tuple[Option[Any], ...]] = (
    *DATABASE_OPTIONS,
    *(o for o in COMMON if o not in DATABASE_OPTIONS),
    WAIT_TIMEOUT,
    *grants.ROLE_OPTIONS,
)

COMMAND_HELP: Final = (
    (
        "up",
        "",
        "apply pending migrations, exactly once, under a lock; 6 on breaking drift (degraded: a warning)",
        "up --lock-timeout 300",
    ),
    (
        "status",
        "",
        "show applied, pending and ahead-of-this-image migrations (--json for machines)",
        "status --json --exit-code",
    ),
    ("plan", "", "print the SQL `up` would run; touches nothing", "plan > pending.sql"),
    ("verify", "", "exit 0 when all applied and unchanged, 6 on any drift, 8 when pending", "verify"),
    (
        "wait",
        "",
        "block until every migration of this image is applied (init containers); 6 on breaking drift",
        "wait --timeout 600",
    ),
    ("baseline", "VERSION", "record versions up to VERSION as applied without running them", "baseline 1"),
    (
        "repair",
        "",
        "restore missing or INVALID indexes and constraints, lock-safe (`plan --repair` prints how)",
        "repair --ddl-lock-timeout 5",
    ),
)

ROLLBACK_HELP: Final = (
    "A database migrated past this image (a rollback) is not drift: up, wait, verify, status and plan log "
    "ledger_ahead and go on while the live schema holds what this image's migrations create; up, wait, "
    "verify and status --exit-code exit 6 when a newer migration removed or changed something this image "
    "needs (roll forward instead)."
)


def epilog() -> str:
    """The commands with an example each, the environment, and the exit codes, from their tables."""
    lines = ["commands (default: up):"]
    for name, argument, summary, example in COMMAND_HELP:
        lines.append(f"  {f'{name} {argument}'.strip():<18} {summary}")
        lines.append(f"  {'':<18}   {PROGRAM} {example}")
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    up = commands.add_parser("up", parents=[common], help="apply pending migrations (default)")
    up.add_argument("--json", action="store_true", help="print the result (applied files, version) on stdout")
    add_flags(up, grants.ROLE_OPTIONS)
    status = commands.add_parser("status", parents=[common], help="show applied and pending migrations")
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.add_argument("--exit-code", action="store_true", help="exit 8 when pending, 6 on drift")
    plan = commands.add_parser("plan", parents=[common], help="print the SQL up would run")
    plan.add_argument("--repair", action="store_true", help="print the SQL `repair` would run instead")
    commands.add_parser("verify", parents=[common], help="0 applied, 6 drift, 8 pending")
    wait = commands.add_parser("wait", parents=[common], help="block until all migrations are applied")
    add_flags(wait, [WAIT_TIMEOUT])
    base = commands.add_parser("baseline", parents=[common], help="mark versions up to VERSION as applied")
    base.add_argument("version", metavar="VERSION", help="highest version to record, e.g. 1")
    commands.add_parser("repair", parents=[common], help="restore missing or INVALID indexes and constraints")
    return parser


@dataclass(frozen=True)
class MigratorSettings:
    """Everything one invocation needs, from flags then environment; repr shows no password."""

    command: str
    database: DatabaseSettings
    log_format: str
    options: RunOptions
    connect_timeout: float
    wait_timeout: float  # 0 for every command but `wait`
    as_json: bool = False
    exit_code: bool = False
    baseline_version: int | None = None
    repair: bool = False  # `plan --repair`

    @classmethod
    def load(cls, argv: Sequence[str], env: Mapping[str, str], *, tty: bool) -> MigratorSettings:
        args = build_parser().parse_args(with_default_command(argv))
        sources = Sources(vars(args), env)
        return cls(
            command=args.command,
            database=DatabaseSettings.from_sources(sources, program=PROGRAM),
            log_format=chosen_format(sources, LOG_FORMAT, tty=tty),
            options=RunOptions(
                lock_timeout=sources.value(LOCK_TIMEOUT),
                statement_timeout=sources.value(STATEMENT_TIMEOUT),
                ddl_lock_timeout=sources.value(DDL_LOCK_TIMEOUT),
                concurrent_wait_timeout=sources.value(CONCURRENT_WAIT_TIMEOUT),
                lock_retry_budget=sources.value(LOCK_RETRY_BUDGET),
                maintenance_work_mem_kb=sources.value(MAINTENANCE_WORK_MEM),
                max_parallel_maintenance_workers=sources.value(MAX_PARALLEL_MAINTENANCE_WORKERS),
                roles=grants.roles_from(sources) if args.command == "up" else grants.NO_ROLES,
            ),
            connect_timeout=sources.value(CONNECT_TIMEOUT),
            # `wait`'s alone: a bad MIGRATOR_WAIT_TIMEOUT in a shared env must not stop `up` or `status`.
            wait_timeout=sources.value(WAIT_TIMEOUT) if args.command == "wait" else 0.0,
            as_json=bool(getattr(args, "json", False)),
            exit_code=bool(getattr(args, "exit_code", False)),
            baseline_version=parse_version(args.version) if args.command == "baseline" else None,
            repair=bool(getattr(args, "repair", False)),
        )


def parse_version(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
        raise UsageError(f"baseline VERSION must be a positive integer, not {text!r}")
    return int(text)


def with_default_command(argv: Sequence[str]) -> list[str]:
    """No command means `up`; `--help` alone still shows the top-level help."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["up", *argv]
    return list(argv)
