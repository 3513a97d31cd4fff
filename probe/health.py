"""Turn the monitor's latest snapshot into health answers: kube-style text lines and JSON bodies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from probe.checks import CHECK_NAMES, DATABASE, PGVECTOR, SCHEMA, CheckResult
from probe.monitor import Snapshot

SHUTDOWN: Final = "shutdown"


@dataclass(frozen=True)
class View:
    """What a request sees: the latest snapshot and the process's own state, read once."""

    snapshot: Snapshot | None
    age: float | None
    stale: bool
    alive: bool
    draining: bool
    now: datetime


@dataclass(frozen=True)
class Verdict:
    """One named line of a readiness answer."""

    name: str
    ok: bool
    reason: str = ""

    def line(self, excluded: bool = False) -> str:
        if excluded:
            return f"[+]{self.name} excluded: {'ok' if self.ok else 'failed'}"
        return f"[+]{self.name} ok" if self.ok else f"[-]{self.name} failed: {self.reason}"


def check_verdict(view: View, name: str) -> Verdict:
    """A check passes only when the latest round is fresh and its result passed."""
    if view.snapshot is None:
        return Verdict(name, False, "no check round finished yet")
    if view.stale:
        return Verdict(name, False, f"stale: last round ended {view.age or 0:.1f}s ago")
    result = view.snapshot.results[name]
    return Verdict(name, result.ok, result.reason)


def shutdown_verdict(view: View) -> Verdict:
    return Verdict(SHUTDOWN, not view.draining, "shutting down")


@dataclass(frozen=True)
class Readiness:
    """The combined `/readyz` answer: which lines, which exclusions, passed or not."""

    verdicts: tuple[Verdict, ...]
    excluded: frozenset[str]
    unknown_exclusions: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts if v.name not in self.excluded)

    def text(self, verbose: bool) -> str:
        """kube-apiserver style: "ok" when passing quietly, else every line and the outcome."""
        if self.ok and not verbose:
            return "ok\n"
        lines = [v.line(v.name in self.excluded) for v in self.verdicts]
        if self.unknown_exclusions:
            names = ", ".join(repr(name) for name in self.unknown_exclusions)
            lines.append(f"warn: some health checks cannot be excluded: no matches for {names}")
        lines.append(f"readyz check {'passed' if self.ok else 'failed'}")
        return "\n".join(lines) + "\n"


def readiness(view: View, exclude: Iterable[str] = ()) -> Readiness:
    """Every check plus the shutdown line; `shutdown` itself cannot be excluded."""
    asked = [name for raw in exclude for name in raw.split(",") if name]
    excluded = frozenset(name for name in asked if name in CHECK_NAMES)
    unknown = tuple(dict.fromkeys(name for name in asked if name not in CHECK_NAMES))
    verdicts = (shutdown_verdict(view), *(check_verdict(view, name) for name in CHECK_NAMES))
    return Readiness(verdicts, excluded, unknown)


def overall_status(view: View, names: Sequence[str] = CHECK_NAMES) -> str:
    """healthy: everything passes; unhealthy: the probe itself cannot vouch; else degraded."""
    if view.draining or not view.alive:
        return "unhealthy"
    return "healthy" if all(check_verdict(view, name).ok for name in names) else "degraded"


def health_body(view: View, version: str, names: Sequence[str] = CHECK_NAMES) -> dict[str, Any]:
    """The JSON body, compatible with kata-context's original health endpoint."""
    snapshot = view.snapshot
    return {
        "status": overall_status(view, names),
        "timestamp": view.now.isoformat().replace("+00:00", "Z"),
        "version": version,
        "checkedAt": snapshot.finished_at.isoformat().replace("+00:00", "Z") if snapshot else None,
        "checks": {name: check_body(view, name) for name in names},
    }


def check_body(view: View, name: str) -> dict[str, Any]:
    verdict = check_verdict(view, name)
    result = view.snapshot.results.get(name) if view.snapshot and not view.stale else None
    if name == DATABASE:
        return database_body(view, verdict, result)
    if name == PGVECTOR:
        body: dict[str, Any] = {"status": "installed" if verdict.ok else "unknown"}
        if result is not None and result.details.get("installed") is False:
            body["status"] = "missing"
        if result is not None and "version" in result.details:
            body["version"] = result.details["version"]
    elif name == SCHEMA:
        body = {"status": "current" if verdict.ok else "unknown"}
        if result is not None and "version" in result.details:
            body["status"] = (
                "current" if verdict.ok else ("drift" if result.details["changed"] else "pending")
            )
            body.update({k: result.details[k] for k in ("version", "expected", "pending")})
    else:
        body = {"status": "ok" if verdict.ok else "failed"}
    if not verdict.ok:
        body["error"] = verdict.reason
    return body


def database_body(view: View, verdict: Verdict, result: CheckResult | None) -> dict[str, Any]:
    pooled = view.snapshot.pooled if view.snapshot else None
    body: dict[str, Any] = {"status": "connected" if verdict.ok else "disconnected"}
    if verdict.ok and result is not None:
        body["latencyMs"] = round(float(result.details["latency"]) * 1000, 3)
    body["pooled"] = bool(pooled and pooled.pooled)
    body["pooledSource"] = pooled.source if pooled else "default"
    if not verdict.ok:
        body["error"] = verdict.reason
    return body
