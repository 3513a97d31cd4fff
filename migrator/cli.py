"""`kata-migrate`: a table of verbs, each a thin function over the library; only `main` exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, TextIO
from urllib.parse import unquote

import asyncpg

from migrator import grants, privileges
from migrator.catalog import Catalog, CatalogError, read_catalog
from migrator.connection import connect_with_retry, direct_url, read_url
from migrator.errors import (
    ConnectionLost,
    InternalError,
    Interrupted,
    MigrationsPending,
    MigratorError,
    UsageError,
    exit_status,
)
from migrator.events import FORMATS, EventLog
from migrator.ledger import SchemaState, read_state
from migrator.runner import RunOptions, baseline, check_drift, migrate
from pgconn.dsn import DatabaseUrl
from pgconn.errors import classify_error
from pgconn.settings import DatabaseSettings, SettingsError, parse_seconds

PROGRAM = "kata-migrate"
WAIT_INTERVAL = 1.0

EXAMPLES = """\
commands (default: up):
  up                 apply pending migrations, exactly once, under a lock
                       kata-migrate up --lock-timeout 300
  status             show applied and pending migrations (--json for machines)
                       kata-migrate status --json --exit-code
  plan               print the SQL `up` would run; touches nothing
                       kata-migrate plan > pending.sql
  verify             exit 0 when all applied and unchanged, 6 on drift, 8 when pending
                       kata-migrate verify
  wait               block until every migration of this image is applied (init containers)
                       kata-migrate wait --timeout 600
  baseline VERSION   record versions up to VERSION as applied without running them
                       kata-migrate baseline 1

settings (environment): DATABASE_URL (required), DATABASE_URL_UNPOOLED, DATABASE_POOLED,
  MIGRATIONS_DIR, MIGRATOR_LOCK_TIMEOUT, MIGRATOR_CONNECT_TIMEOUT, MIGRATOR_STATEMENT_TIMEOUT,
  MIGRATOR_DDL_LOCK_TIMEOUT, MIGRATOR_WAIT_TIMEOUT, MIGRATOR_LOG_FORMAT, POD_NAME,
  MIGRATOR_APP_ROLE, MIGRATOR_PROBE_ROLE (up: the roles it grants to).
exit codes: 0 ok, 1 internal error, 2 usage (or a role setting naming no role), 3 unreachable/auth,
  4 pgvector, 5 migration failed, 6 drift, 7 lock timeout, 8 pending, 9 pooled URL without
  DATABASE_URL_UNPOOLED, 10 insufficient privilege (the message gives the GRANT),
  130/143 interrupted by SIGINT/SIGTERM.
"""

# name -> (flag, environment variable, default seconds)
DURATIONS: dict[str, tuple[str, str, float]] = {
    "lock_timeout": ("--lock-timeout", "MIGRATOR_LOCK_TIMEOUT", 120.0),
    "connect_timeout": ("--connect-timeout", "MIGRATOR_CONNECT_TIMEOUT", 60.0),
    "statement_timeout": ("--statement-timeout", "MIGRATOR_STATEMENT_TIMEOUT", 3600.0),
    "ddl_lock_timeout": ("--ddl-lock-timeout", "MIGRATOR_DDL_LOCK_TIMEOUT", 10.0),
    "wait_timeout": ("--timeout", "MIGRATOR_WAIT_TIMEOUT", 300.0),
}
DURATION_HELP = {
    "lock_timeout": "seconds to wait for another migrator's lock before exit 7",
    "connect_timeout": "seconds to keep retrying the connection before exit 3",
    "statement_timeout": "statement_timeout for each migration statement (0: none)",
    "ddl_lock_timeout": "lock_timeout for each migration statement (0: none)",
    "wait_timeout": "seconds `wait` waits for pending migrations before exit 8",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{PROGRAM} --help`")


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--migrations", metavar="DIR", help="migration files (default: MIGRATIONS_DIR or packaged)"
    )
    common.add_argument("--log-format", choices=FORMATS, help="stderr events (default: json unless a TTY)")
    for name, (flag, env, default) in DURATIONS.items():
        if name != "wait_timeout":
            common.add_argument(
                flag, dest=name, metavar="S", help=f"{DURATION_HELP[name]} ({env}, {default:g})"
            )
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Apply kata-context's SQL migrations exactly once (Kubernetes Job or laptop).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    up = commands.add_parser("up", parents=[common], help="apply pending migrations (default)")
    grants.add_role_flags(up)
    status = commands.add_parser("status", parents=[common], help="show applied and pending migrations")
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.add_argument("--exit-code", action="store_true", help="exit 8 when pending, 6 on drift")
    commands.add_parser("plan", parents=[common], help="print the SQL up would run")
    commands.add_parser("verify", parents=[common], help="0 applied, 6 drift, 8 pending")
    wait = commands.add_parser("wait", parents=[common], help="block until all migrations are applied")
    _, env, default = DURATIONS["wait_timeout"]
    wait.add_argument(
        "--timeout",
        dest="wait_timeout",
        metavar="S",
        help=f"{DURATION_HELP['wait_timeout']} ({env}, {default:g})",
    )
    base = commands.add_parser("baseline", parents=[common], help="mark versions up to VERSION as applied")
    base.add_argument("version", metavar="VERSION", help="highest version to record, e.g. 1")
    return parser


@dataclass(frozen=True)
class MigratorSettings:
    """Everything one invocation needs, from flags then environment; repr shows no password."""

    command: str
    database: DatabaseSettings
    log_format: str
    options: RunOptions
    connect_timeout: float
    wait_timeout: float
    as_json: bool = False
    exit_code: bool = False
    baseline_version: int | None = None

    @classmethod
    def load(cls, argv: Sequence[str], env: Mapping[str, str], *, tty: bool) -> MigratorSettings:
        args = build_parser().parse_args(with_default_command(argv))
        seconds = {
            name: parse_seconds(
                flag if getattr(args, name, None) is not None else envname,
                _first(getattr(args, name, None), env.get(envname), str(default)),
            )
            for name, (flag, envname, default) in DURATIONS.items()
        }
        version = None
        if args.command == "baseline":
            if not re.fullmatch(r"[0-9]+", args.version) or int(args.version) <= 0:
                raise UsageError(f"baseline VERSION must be a positive integer, not {args.version!r}")
            version = int(args.version)
        return cls(
            command=args.command,
            database=DatabaseSettings.from_env(env, program=PROGRAM, migrations_dir=args.migrations),
            log_format=args.log_format or log_format(env, tty=tty),
            options=RunOptions(
                lock_timeout=seconds["lock_timeout"],
                statement_timeout=seconds["statement_timeout"],
                ddl_lock_timeout=seconds["ddl_lock_timeout"],
                roles=grants.roles_from(args, env) if args.command == "up" else grants.NO_ROLES,
            ),
            connect_timeout=seconds["connect_timeout"],
            wait_timeout=seconds["wait_timeout"],
            as_json=bool(getattr(args, "json", False)),
            exit_code=bool(getattr(args, "exit_code", False)),
            baseline_version=version,
        )


def _first(*values: str | None) -> str:
    return next(v for v in values if v is not None and v.strip() != "")


def with_default_command(argv: Sequence[str]) -> list[str]:
    """No command means `up`; `--help` alone still shows the top-level help."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["up", *argv]
    return list(argv)


def log_format(env: Mapping[str, str], *, tty: bool) -> str:
    chosen = env.get("MIGRATOR_LOG_FORMAT", "").strip().lower()
    if chosen in FORMATS:
        return chosen
    return "text" if tty else "json"


def raw_password_scrubbers(env: Mapping[str, str]) -> list[Callable[[str], str]]:
    """Scrub passwords even from URLs too broken to parse, so a usage error cannot leak one."""
    secrets: set[str] = set()
    for name in ("DATABASE_URL", "DATABASE_URL_UNPOOLED"):
        for match in re.finditer(r"://[^/@:]*:([^@/]+)@", env.get(name, "")):
            secrets.update({match.group(1), unquote(match.group(1))})
        for match in re.finditer(r"[?&]password=([^&]+)", env.get(name, "")):
            secrets.update({match.group(1), unquote(match.group(1))})
    return [_replacer(secret) for secret in secrets if secret]


def _replacer(secret: str) -> Callable[[str], str]:
    return lambda text: text.replace(secret, "***")


# --- commands -------------------------------------------------------------------------------


@dataclass
class Context:
    settings: MigratorSettings
    catalog: Catalog
    log: EventLog
    stdout: TextIO

    @property
    def application_name(self) -> str:
        return self.settings.database.application_name

    async def connect(self, url: DatabaseUrl) -> asyncpg.Connection:
        conn = await connect_with_retry(
            url, application_name=self.application_name, timeout=self.settings.connect_timeout, log=self.log
        )
        conn.add_log_listener(self._server_notice)
        try:
            await privileges.check_access(conn, self.settings.command)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _server_notice(self, conn: object, message: asyncpg.PostgresLogMessage) -> None:
        self.log.info("server_notice", str(getattr(message, "message", message)))

    async def read_state(self) -> SchemaState:
        conn = await self.connect(read_url(self.settings.database))
        try:
            return await read_state(conn, self.catalog)
        finally:
            await conn.close()


async def cmd_up(ctx: Context) -> int:
    url = direct_url(ctx.settings.database)
    conn = await ctx.connect(url)
    try:
        await grants.check_roles(conn, ctx.settings.options.roles, ctx.log)
        await migrate(conn, ctx.catalog, ctx.settings.options, ctx.application_name, ctx.log)
    finally:
        await conn.close()
    return 0


async def cmd_baseline(ctx: Context) -> int:
    url = direct_url(ctx.settings.database)
    conn = await ctx.connect(url)
    try:
        assert ctx.settings.baseline_version is not None
        await baseline(
            conn,
            ctx.catalog,
            ctx.settings.baseline_version,
            ctx.settings.options,
            ctx.application_name,
            ctx.log,
        )
    finally:
        await conn.close()
    return 0


async def cmd_status(ctx: Context) -> int:
    state = await ctx.read_state()
    if ctx.settings.as_json:
        ctx.stdout.write(json.dumps(status_document(ctx.catalog, state), default=str) + "\n")
    else:
        ctx.stdout.write(status_text(ctx.catalog, state))
    if ctx.settings.exit_code:
        check_drift(ctx.catalog, state)
        _raise_if_pending(ctx.catalog, state)
    return 0


async def cmd_plan(ctx: Context) -> int:
    state = await ctx.read_state()
    check_drift(ctx.catalog, state)
    files = ctx.catalog.by_version()
    for version in state.pending:
        migration = files[version]
        mode = "in its own transaction" if migration.transactional else "outside a transaction"
        ctx.stdout.write(f"-- {migration.filename} (version {version}, {mode})\n")
        ctx.stdout.write(migration.sql.replace("\r\n", "\n").rstrip("\n") + "\n\n")
    ctx.log.info("plan", pending=len(state.pending), version=state.version)
    return 0


async def cmd_verify(ctx: Context) -> int:
    state = await ctx.read_state()
    check_drift(ctx.catalog, state)
    _raise_if_pending(ctx.catalog, state)
    ctx.log.info("verified", "every migration is applied and unchanged", version=state.version)
    return 0


async def cmd_wait(ctx: Context) -> int:
    started = time.monotonic()
    deadline = started + ctx.settings.wait_timeout
    conn = await ctx.connect(read_url(ctx.settings.database))
    try:
        announced = False
        while True:
            state = await read_state(conn, ctx.catalog)
            check_drift(ctx.catalog, state)
            if not state.pending:
                break
            if time.monotonic() >= deadline:
                _raise_if_pending(ctx.catalog, state, waited=time.monotonic() - started)
            if not announced:
                ctx.log.info("waiting", pending=len(state.pending), timeout_s=ctx.settings.wait_timeout)
                announced = True
            await asyncio.sleep(min(WAIT_INTERVAL, max(0.0, deadline - time.monotonic())))
    finally:
        await conn.close()
    ctx.log.info("ready", version=state.version, waited_ms=round((time.monotonic() - started) * 1000, 1))
    return 0


def _raise_if_pending(catalog: Catalog, state: SchemaState, *, waited: float | None = None) -> None:
    if state.pending:
        files = catalog.by_version()
        raise MigrationsPending([files[v].filename for v in state.pending], waited=waited)


COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "up": cmd_up,
    "status": cmd_status,
    "plan": cmd_plan,
    "verify": cmd_verify,
    "wait": cmd_wait,
    "baseline": cmd_baseline,
}


def status_entries(catalog: Catalog, state: SchemaState) -> list[dict[str, object]]:
    """One entry per version known to the files or the ledger, with its state."""
    files = catalog.by_version()
    rows = {row.version: row for row in state.applied}
    entries: list[dict[str, object]] = []
    for version in sorted(set(rows) | set(files)):
        migration, row = files.get(version), rows.get(version)
        if version in state.changed:
            kind = "changed"
        elif version in state.missing:
            kind = "missing"
        else:
            kind = row.kind if row else "pending"
        entries.append(
            {
                "version": version,
                "name": migration.name if migration else row.name if row else "",
                "file": migration.filename if migration else None,
                "state": kind,
                "applied_at": row.applied_at.isoformat() if row else None,
                "applied_by": row.applied_by if row else None,
                "duration_ms": row.duration_ms if row else None,
            }
        )
    return entries


def status_document(catalog: Catalog, state: SchemaState) -> dict[str, object]:
    return {
        "version": state.version,
        "latest": catalog.latest_version,
        "pending": list(state.pending),
        "changed": list(state.changed),
        "missing": list(state.missing),
        "migrations": status_entries(catalog, state),
    }


def status_text(catalog: Catalog, state: SchemaState) -> str:
    lines = [
        f"schema version {state.version}, this image's latest {catalog.latest_version}, "
        f"{len(state.pending)} pending" + (", DRIFT" if state.drifted else "")
    ]
    for entry in status_entries(catalog, state):
        applied = f"  {entry['applied_at']}  by {entry['applied_by']}" if entry["applied_at"] else ""
        lines.append(f"{entry['version']:>6}  {entry['state']:<8}  {entry['file'] or entry['name']}{applied}")
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------------


async def run_command(ctx: Context) -> int:
    """Run the verb; SIGTERM/SIGINT cancel it (asyncpg cancels the running statement)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if not received:
            received.append(signum)
            ctx.log.warning("signal", f"received {signum.name}: cancelling", signal=signum.name)
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await COMMANDS[ctx.settings.command](ctx)
    except asyncio.CancelledError:
        if not received:
            raise
        signum = received[0]
        raise Interrupted(signum.name, 128 + signum.value) from None
    except asyncpg.InsufficientPrivilegeError as exc:  # one the checks did not foresee: still exit 10
        database = ctx.settings.database
        raise privileges.explain(exc, (database.unpooled_url or database.url).user) from exc
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(argv: Sequence[str], env: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> int:
    """The whole program, with its streams and environment passed in; returns the exit status."""
    tty = stdout.isatty()
    log = EventLog(stderr, fmt=log_format(env, tty=tty), scrubbers=raw_password_scrubbers(env))
    started = time.monotonic()
    try:
        try:
            settings = MigratorSettings.load(argv, env, tty=tty)
        except SettingsError as exc:
            raise UsageError(str(exc)) from exc
        log.fmt = settings.log_format
        for url in (settings.database.url, settings.database.unpooled_url):
            if url is not None:
                log.add_scrubber(url.scrub)
        try:
            catalog = read_catalog(settings.database.migrations_dir)
        except CatalogError as exc:
            raise UsageError(str(exc)) from exc
        if settings.baseline_version is not None and settings.baseline_version not in catalog.by_version():
            raise UsageError(
                f"baseline {settings.baseline_version}: no migration file has that version; "
                f"choose one of {', '.join(str(m.version) for m in catalog.migrations) or '(none)'}"
            )
        log.info(
            "start",
            command=settings.command,
            migrations=len(catalog.migrations),
            latest=catalog.latest_version,
            application_name=settings.database.application_name,
        )
        ctx = Context(settings, catalog, log, stdout)
        status = asyncio.run(run_command(ctx))
        log.info("done", command=settings.command, duration_ms=round((time.monotonic() - started) * 1000, 1))
        return status
    except MigratorError as error:
        log.error(error.event, str(error), exit_code=exit_status(error))
        return exit_status(error)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        if is_connection_loss(exc):
            lost = ConnectionLost(classify_error(exc))
            log.error(lost.event, str(lost), exit_code=lost.exit_code)
            return lost.exit_code
        internal = InternalError(f"{type(exc).__name__}: {exc}")
        log.error(internal.event, str(internal), exit_code=internal.exit_code)
        return internal.exit_code


def is_connection_loss(exc: BaseException) -> bool:
    """A broken connection or a server shutting down (57P01-57P03), not a bug in us."""
    if isinstance(exc, OSError | asyncpg.InterfaceError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and (sqlstate.startswith(("08", "57P")))


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:], os.environ, sys.stdout, sys.stderr))


if __name__ == "__main__":
    main()
