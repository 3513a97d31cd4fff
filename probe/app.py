"""The aiohttp application: routes that read the monitor's snapshot, and the resources they need."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from probe.check import Check
from probe.checks import settings_checks
from probe.connection import STATES, HeldConnection
from probe.health import View, check_verdict, health_body, is_ready, readiness, shutdown_verdict
from probe.metrics import ProbeMetrics, define_metrics
from probe.monitor import Monitor
from probe.pooled import PoolerObserver
from probe.settings import ProbeSettings

NO_STORE: Final = {"Cache-Control": "no-store"}
NOT_VERBOSE: Final = frozenset({"0", "false"})
# A check's name is a path segment, a metric label value and a `?exclude=` item.
CHECK_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class ProbeState:
    """Mutable process state, stored before startup and changed in place: the drain flag."""

    draining: bool = False


SETTINGS: Final = web.AppKey("settings", ProbeSettings)
REGISTRY: Final = web.AppKey("registry", CollectorRegistry)
METRICS: Final = web.AppKey("metrics", ProbeMetrics)
CONNECTION: Final = web.AppKey("connection", HeldConnection)
MONITOR: Final = web.AppKey("monitor", Monitor)
STATE: Final = web.AppKey("state", ProbeState)
VERSION: Final = web.AppKey("version", str)
CHECKS: Final = web.AppKey[Sequence[Check[Any]]]("checks")


# No endpoint reads a request body: after answering a request that declared one and did not send
# it, wait this long for it (aiohttp's default is 10 s) before closing the connection.
LINGERING_SECONDS: Final = 1.0


def server_options(settings: ProbeSettings) -> dict[str, Any]:
    """aiohttp's per-connection options, for `web.AppRunner`, probe.server.ProbeSite (and the
    tests' servers): no access log (requests are not logged); idle and half-sent requests end
    after `idle_timeout`, an unsent body after LINGERING_SECONDS."""
    return {
        "access_log": None,
        "keepalive_timeout": settings.idle_timeout,
        "lingering_time": LINGERING_SECONDS,
    }


def connection_count(connection: HeldConnection, state: str) -> float:
    return float(connection.count(state))


def probe_version() -> str:
    try:
        return metadata.version("kata-context-db")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: ProbeSettings,
    registry: CollectorRegistry,
    *,
    checks: Sequence[Check[Any]] | None = None,
) -> web.Application:
    """Build the app around `checks` (default: every probe's, over the settings' migrations);
    nothing connects until startup. CatalogError if the migrations are unusable.
    """
    if checks is None:
        checks = settings_checks(settings)
    listed = tuple(checks)
    names = [check.name for check in listed]
    if len(set(names)) != len(names) or not all(CHECK_NAME.fullmatch(name) for name in names):
        raise ValueError(f"check names must be unique words ({CHECK_NAME.pattern}), got {names}")
    version = probe_version()
    metrics = define_metrics(registry, version=version, checks=listed)
    db = settings.database
    connection = HeldConnection(db.url, application_name=db.application_name, timeout=settings.timeout)
    monitor = Monitor(
        connection=connection,
        checks=listed,
        observer=PoolerObserver(db.url, db.pooled),
        interval=settings.interval,
        timeout=settings.timeout,
        metrics=metrics,
    )
    # Read at scrape time, so a stuck monitor shows as down instead of the last good value.
    metrics.up.set_function(lambda: float(monitor.database_up()))
    for state in STATES:
        gauge = metrics.pool_connections.labels(state=state)
        gauge.set_function(partial(connection_count, connection, state))

    app = web.Application(middlewares=[refuse_resourceless])
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[METRICS] = metrics
    app[CONNECTION] = connection
    app[MONITOR] = monitor
    app[STATE] = ProbeState()
    app[VERSION] = version
    app[CHECKS] = listed
    # First in, last out: the monitor stops before the connection closes.
    app.cleanup_ctx.append(connection_context)
    app.cleanup_ctx.append(monitor_context)
    app.router.add_get("/livez", liveness)
    app.router.add_get("/healthz", liveness)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/readyz/{name}", readyz_one)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def connection_context(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[CONNECTION].close()


async def monitor_context(app: web.Application) -> AsyncIterator[None]:
    app[MONITOR].start()
    yield
    await app[MONITOR].stop()


def current_view(app: web.Application) -> View:
    monitor = app[MONITOR]
    return View(
        snapshot=monitor.latest,
        age=monitor.age(),
        stale=monitor.stale(),
        alive=monitor.alive(),
        draining=app[STATE].draining,
        now=datetime.now(UTC),
    )


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def json_response(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=NO_STORE,
    )


def text_response(text: str, status: int) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain", headers=NO_STORE)


READY_BODY: Final = b"ok\n"


def ready_response() -> web.Response:
    return web.Response(
        body=READY_BODY, status=200, content_type="text/plain", charset="utf-8", headers=NO_STORE
    )


def readiness_json(view: View, version: str, checks: Sequence[Check[Any]], ok: bool) -> web.Response:
    """The health body for the checks asked about, 200 or 503 by the readiness verdict."""
    return json_response(health_body(view, version, checks), 200 if ok else 503)


async def liveness(request: web.Request) -> web.Response:
    """200 while the loop and the monitor run, whatever the database does; the body reports it."""
    view = current_view(request.app)
    body = health_body(view, request.app[VERSION], request.app[CHECKS])
    return json_response(body, 200 if view.alive else 503)


async def readyz(request: web.Request) -> web.Response:
    # kubelet's plain GET on a healthy probe: the same rule and answer as below, without building
    # the view, the verdict lines or the query (bench/RESULTS.md: 0.99x of a bare handler).
    quick = not request.query_string and not wants_json(request)
    if quick and is_ready(request.app[MONITOR].fresh(), request.app[STATE].draining):
        return ready_response()
    verbose = wants_verbose(request)
    view = current_view(request.app)
    checks = request.app[CHECKS]
    answer = readiness(view, checks, request.query.getall("exclude", []))
    status = 200 if answer.ok else 503
    if wants_json(request) and not verbose:
        asked = [check for check in checks if check.name not in answer.excluded]
        return readiness_json(view, request.app[VERSION], asked, answer.ok)
    return text_response(answer.text(verbose), status)


def wants_verbose(request: web.Request) -> bool:
    """`?verbose=0` and `?verbose=false` are not verbose; any other `?verbose` is, as kube-apiserver
    reads the key's presence (which made `?verbose=false` verbose there)."""
    if "verbose" not in request.query:
        return False
    return request.query["verbose"].strip().lower() not in NOT_VERBOSE


@web.middleware
async def refuse_resourceless(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CONNECT's target is an authority and `OPTIONS *` asks about the server as a whole: neither
    names a route, so aiohttp would answer 404. The probe is no proxy and serves GET and HEAD
    only: both answer 405, like every other method it does not serve."""
    asterisk = request.method == hdrs.METH_OPTIONS and request.raw_path == "*"
    if request.method.upper() == hdrs.METH_CONNECT or asterisk:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], headers=NO_STORE)
    return await handler(request)


async def readyz_one(request: web.Request) -> web.Response:
    """`/readyz/<name>`: one check of the list and the shutdown line; 404 naming the list otherwise."""
    name = request.match_info["name"]
    by_name = {check.name: check for check in request.app[CHECKS]}
    if name not in by_name:
        return text_response(f"404: no check named {name!r}; checks: {', '.join(by_name)}\n", 404)
    view = current_view(request.app)
    verdicts = (shutdown_verdict(view), check_verdict(view, name))
    ok = is_ready(view.fresh, view.draining, [name])
    if wants_json(request):
        return readiness_json(view, request.app[VERSION], [by_name[name]], ok)
    failed = [v.line() for v in verdicts if not v.ok]
    return text_response("ok\n" if ok else "\n".join(failed) + "\n", 200 if ok else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})
