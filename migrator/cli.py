"""`kata-migrate`: settings, then the verb, with every way it can end mapped to its exit code in
`error_for`; only `main` exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

import asyncpg

from migrator import privileges
from migrator.context import Context
from migrator.database_errors import ConnectionLost, from_database
from migrator.errors import InternalError, Interrupted, MigratorError, UsageError, exit_status
from migrator.events import EventLog
from migrator.parser import load_settings
from migrator.settings import LOG_FORMAT, MigratorSettings
from migrator.stopping import Stop
from migrator.termination import FinalEvent, TerminationLog
from migrator.verbs import BY_NAME
from pgconn.config import SettingsError
from pgconn.errors import is_connection_loss
from pgconn.logs import early_format
from schema.catalog import Catalog, CatalogError, read_catalog
from schema.expected import ExpectedSchema
from schema.snapshot import SnapshotError

__all__ = ["main", "run"]


def error_for(exc: BaseException) -> MigratorError:
    """The one place an exception becomes an exit code: ours carry theirs; bad settings or files
    are usage errors; a broken connection is not a bug, nor is a server error the contract has a
    code for (`from_database`); anything else is."""
    if isinstance(exc, MigratorError):
        return exc
    if isinstance(exc, SettingsError | CatalogError | SnapshotError):
        return UsageError(str(exc))
    if is_connection_loss(exc):
        return ConnectionLost(exc)
    return from_database(exc) or InternalError(exc)


async def run_command(ctx: Context) -> int:
    """Run the verb; SIGTERM, SIGINT and SIGHUP cancel it (asyncpg cancels the running statement),
    and close its connections if it has not ended within the grace (migrator/stopping.py)."""
    task = asyncio.current_task()
    assert task is not None
    stop = Stop(task, ctx.log, ctx.close_connections_now)
    with stop.installed(asyncio.get_running_loop()):
        try:
            return await BY_NAME[ctx.settings.command].run(ctx)
        except asyncio.CancelledError:
            if stop.signum is None:
                raise
            raise stop.interrupted() from None
        except asyncpg.InsufficientPrivilegeError as exc:  # one the checks did not foresee: still exit 10
            database = ctx.settings.database
            raise privileges.explain(exc, (database.unpooled_url or database.url).user) from exc
        except Exception:
            if not stop.forced:
                raise
            raise stop.interrupted() from None  # what failed, failed because its connection was closed


def load_catalog(settings: MigratorSettings) -> Catalog:
    """The migration files, and their snapshots read once here so that a missing or malformed one
    is a usage error before any connection, like a malformed file (the verbs read them again)."""
    catalog = read_catalog(settings.database.migrations_dir)
    ExpectedSchema.of(catalog)
    version = settings.baseline_version
    if version is not None and version not in catalog.by_version():
        raise UsageError(
            f"baseline {version}: no migration file has that version; "
            f"choose one of {', '.join(str(m.version) for m in catalog.migrations) or '(none)'}"
        )
    return catalog


def execute(
    argv: Sequence[str], env: Mapping[str, str], stdout: TextIO, log: EventLog, final: TerminationLog
) -> int:
    started = time.monotonic()
    settings = load_settings(argv, env, tty=stdout.isatty())
    log.fmt = settings.log_format
    catalog = load_catalog(settings)
    log.info(
        "start",
        command=settings.command,
        migrations=len(catalog.migrations),
        latest=catalog.latest_version,
        application_name=settings.database.application_name,
    )
    ctx = Context(settings, catalog, log, stdout, writes=BY_NAME[settings.command].writes)
    status = asyncio.run(run_command(ctx))
    log.info("done", command=settings.command, duration_ms=round((time.monotonic() - started) * 1000, 1))
    final.write(FinalEvent.of_success(settings.command, ctx.outcome))
    return status


def run(argv: Sequence[str], env: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> int:
    """The whole program, with its streams and environment passed in; returns the exit status."""
    log = EventLog(stderr, fmt=early_format(argv, env, LOG_FORMAT, tty=stdout.isatty()))
    final = TerminationLog.from_env(env)
    try:
        status = execute(argv, env, stdout, log, final)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError as exc:
        if not output_closed(stdout, log):  # the database's socket, not our reader
            return report(error_for(exc), log, final)
        return 0
    except Exception as exc:
        return report(error_for(exc), log, final)
    except KeyboardInterrupt:  # SIGINT outside the event loop's handler (reading the files, exiting)
        return report(Interrupted("SIGINT", 130), log, final)
    output_closed(stdout, log)  # what is still buffered, written now rather than at exit
    return status


def report(error: MigratorError, log: EventLog, final: TerminationLog) -> int:
    """The final event, in the log and in the termination message kubelet shows for the pod."""
    log.error(error.event, str(error), exit_code=exit_status(error))
    final.write(FinalEvent.of_error(error))
    return exit_status(error)


def output_closed(stdout: TextIO, log: EventLog) -> bool:
    """Flush stdout; True when its reader went away (`status --json | head`: the reader has what
    it wanted, and like `cat` we make no error of it). The descriptor then points at /dev/null,
    so the interpreter's final flush of what is still buffered does not fail again."""
    try:
        stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout.fileno())
            os.close(devnull)
        log.info("output_closed", "stdout was closed by its reader: the rest of the output is dropped")
        return True
    return False


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:], os.environ, sys.stdout, sys.stderr))


if __name__ == "__main__":
    main()
