"""The migrator's settings, below everything but migrator/limits.py and migrator/errors.py: the
option table of its limits and roles, the roles `up` grants to, the log format, and
`MigratorSettings`, what one invocation runs with. The parser and the verbs build them from flags
and environment; the engine only reads them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from migrator.errors import UsageError
from migrator.limits import RunLimits
from pgconn.config import Option, Sources, integer_between, memory_between, parse_seconds
from pgconn.logs import chosen_format, log_format_option
from pgconn.settings import DATABASE_POOLED, MIGRATIONS_DIR, DatabaseSettings

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
# Every verb takes these; the others belong to the verbs that name them (migrator/verbs.py).
LOG_FORMAT: Final = log_format_option("MIGRATOR_LOG_FORMAT")
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


def limits_from(sources: Sources) -> RunLimits:
    return RunLimits(
        lock_timeout=sources.value(LOCK_TIMEOUT),
        statement_timeout=sources.value(STATEMENT_TIMEOUT),
        ddl_lock_timeout=sources.value(DDL_LOCK_TIMEOUT),
        concurrent_wait_timeout=sources.value(CONCURRENT_WAIT_TIMEOUT),
        lock_retry_budget=sources.value(LOCK_RETRY_BUDGET),
        maintenance_work_mem_kb=sources.value(MAINTENANCE_WORK_MEM),
        max_parallel_maintenance_workers=sources.value(MAX_PARALLEL_MAINTENANCE_WORKERS),
    )


# --- the roles `up` grants to (migrator/grants.py) ----------------------------------------------

APP_SETTING: Final = "MIGRATOR_APP_ROLE"
PROBE_SETTING: Final = "MIGRATOR_PROBE_ROLE"


@dataclass(frozen=True)
class Named:
    """One role setting: its name, the role it names, and which column of the table applies."""

    setting: str
    role: str
    side: str  # "app" or "probe"

    @property
    def shown(self) -> str:
        return f"{self.setting}={self.role!r}"


@dataclass(frozen=True)
class Roles:
    """The roles `up` grants to; None leaves that side alone."""

    app: str | None = None
    probe: str | None = None

    @property
    def any(self) -> bool:
        return self.app is not None or self.probe is not None

    @property
    def named(self) -> list[Named]:
        """Each role that is set, with its setting and its column of docs/deploy.md's table."""
        sides = ((APP_SETTING, self.app, "app"), (PROBE_SETTING, self.probe, "probe"))
        return [Named(setting, role, side) for setting, role, side in sides if role is not None]


NO_ROLES: Final = Roles()


def parse_role(name: str, text: str) -> str | None:
    """A role name as given (names are case-sensitive); blank means unset."""
    return text.strip() or None


APP_ROLE: Final = Option(
    "app_role",
    APP_SETTING,
    "--app-role",
    None,
    parse_role,
    "role `up` grants DML on the application's tables (unset: none)",
    "ROLE",
)
PROBE_ROLE: Final = Option(
    "probe_role",
    PROBE_SETTING,
    "--probe-role",
    None,
    parse_role,
    "role `up` grants read access to the ledger (unset: none)",
    "ROLE",
)
ROLE_OPTIONS: Final = (APP_ROLE, PROBE_ROLE)


def roles_from(sources: Sources) -> Roles:
    """Flag, then environment. One role for both would let the probe read the application's data."""
    app, probe = (parse_role(*found) if (found := sources.text(o)) else None for o in ROLE_OPTIONS)
    if app is not None and app == probe:
        raise UsageError(
            f"{APP_SETTING} and {PROBE_SETTING} both name {app!r}: the probe's role must not read the "
            "application's data; give each its own role (docs/deploy.md)"
        )
    return Roles(app=app, probe=probe)


# --- one invocation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigratorSettings:
    """Everything one invocation needs, from flags then environment; repr shows no password."""

    command: str
    database: DatabaseSettings
    log_format: str
    limits: RunLimits
    connect_timeout: float
    wait_timeout: float = 0.0  # 0 for every verb that does not take --timeout (`wait`'s alone)
    roles: Roles = NO_ROLES  # NO_ROLES for every verb but `up`
    as_json: bool = False
    exit_code: bool = False
    baseline_version: int | None = None
    repair: bool = False  # `plan --repair`

    @classmethod
    def load(
        cls, args: argparse.Namespace, env: Mapping[str, str], *, tty: bool, options: Sequence[Option[Any]]
    ) -> MigratorSettings:
        """From what the parser read (migrator/parser.py) and the environment; `options` are the
        verb's own settings beyond COMMON: a bad value of another verb's (MIGRATOR_WAIT_TIMEOUT in
        a shared env) must not stop this one."""
        sources = Sources(vars(args), env)
        return cls(
            command=args.command,
            database=DatabaseSettings.from_sources(sources, program=PROGRAM),
            log_format=chosen_format(sources, LOG_FORMAT, tty=tty),
            limits=limits_from(sources),
            connect_timeout=sources.value(CONNECT_TIMEOUT),
            wait_timeout=sources.value(WAIT_TIMEOUT) if WAIT_TIMEOUT in options else 0.0,
            roles=roles_from(sources) if APP_ROLE in options else NO_ROLES,
            as_json=bool(getattr(args, "json", False)),
            exit_code=bool(getattr(args, "exit_code", False)),
            baseline_version=getattr(args, "version", None),
            repair=bool(getattr(args, "repair", False)),
        )
