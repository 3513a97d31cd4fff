"""`kata-probe`: load settings, serve until SIGTERM, drain, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from pgconn.config import SettingsError
from pgconn.logs import configure_logging, early_format
from probe.app import STATE, create_app, probe_version, server_options
from probe.check import Check
from probe.checks import settings_checks
from probe.server import ProbeSite
from probe.settings import LOG_FORMAT, ProbeSettings
from schema.catalog import CatalogError
from schema.snapshot import SnapshotError

EXIT_OK = 0
EXIT_USAGE = 2

# SIGHUP (a closed terminal, or a supervisor's "reload") drains like SIGTERM: the probe has
# nothing to reload, and dying without the drain would drop the pod from the Service abruptly.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Their default action ends the process with no drain and no log; nothing here uses them.
IGNORED_SIGNALS: Final = (signal.SIGUSR1, signal.SIGUSR2)

log = logging.getLogger("probe")


def stopping(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info(f"received {sig.name}", extra={"event": "signal", "signal": sig.name})
    stop.set()


def ignoring(sig: signal.Signals) -> None:
    log.warning(f"received {sig.name}: ignored", extra={"event": "signal_ignored", "signal": sig.name})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kata-probe` and `python -m probe`; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    tty = sys.stderr.isatty()  # where the log goes
    configure_logging(fmt=early_format(args, os.environ, LOG_FORMAT, tty=tty))
    try:
        settings = ProbeSettings.load(args, os.environ, tty=tty)
        configure_logging(fmt=settings.log_format)  # the config file may name another
        # Built once, here: a missing or malformed snapshot stops the start, not a round.
        checks = settings_checks(settings)
    except (SettingsError, CatalogError, SnapshotError) as exc:
        log.error(str(exc), extra={"event": "config_error"})
        return EXIT_USAGE
    try:
        asyncio.run(serve(settings, checks))
    except socket.gaierror as exc:  # a host name that does not resolve: the setting is wrong
        log.error(
            f"cannot listen on PROBE_HOST={settings.host}: {exc.strerror}; use 0.0.0.0, :: or an IP",
            extra={"event": "config_error"},
        )
        return EXIT_USAGE
    except ListenFailed as failed:  # the port is taken, privileged, or the address is not this host's
        # asyncio rewrites strerror into a sentence quoting the address: the errno's own text reads better.
        error = failed.error
        reason = os.strerror(error.errno) if error.errno else str(error)
        log.error(
            f"cannot listen on {settings.host}:{settings.port}: {reason}; choose a free "
            "port (PROBE_PORT) on an address of this host (PROBE_HOST)",
            extra={"event": "listen_failed"},
        )
        return EXIT_USAGE
    return EXIT_OK


class ListenFailed(Exception):
    """Binding the listening socket failed: a setting to change, not an internal error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def serve(settings: ProbeSettings, checks: Sequence[Check[Any]]) -> None:
    """Run the app until SIGTERM or SIGINT, then answer 503 on /readyz for the drain delay."""
    app = create_app(settings, CollectorRegistry(), checks=checks)
    options = server_options(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, **options)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping, sig, stop)
    for sig in IGNORED_SIGNALS:
        loop.add_signal_handler(sig, ignoring, sig)
    try:
        site = ProbeSite(runner, settings.host, settings.port, options)
        try:
            await site.start()
        except socket.gaierror:
            raise
        except OSError as exc:
            raise ListenFailed(exc) from exc
        log.info(
            "probe listening",
            extra={
                "event": "started",
                "version": probe_version(),
                "listen": f"{settings.host}:{settings.port}",
                "database": settings.database.url.redacted(),
                "interval": settings.interval,
                "timeout": settings.timeout,
                "shutdown_delay": settings.shutdown_delay,
            },
        )
        await stop.wait()
        app[STATE].draining = True
        log.info(
            "shutting down: readyz answers 503 while draining",
            extra={"event": "draining", "delay": settings.shutdown_delay},
        )
        stop.clear()
        # A second signal ends the drain early: the operator means it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.shutdown_delay)
    finally:
        for sig in (*STOP_SIGNALS, *IGNORED_SIGNALS):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("probe stopped", extra={"event": "stopped"})
