"""Turn the monitor's latest snapshot into health answers: kube-style text lines and JSON bodies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from probe.check import Check, Snapshot, Verdict

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

    @property
    def fresh(self) -> Snapshot | None:
        """The snapshot while it counts (the monitor judged it not stale), else None."""
        return None if self.stale else self.snapshot


def is_ready(fresh: Snapshot | None, draining: bool, names: Iterable[str] | None = None) -> bool:
    """The readiness rule, written once: not shutting down, and a fresh round in which every named
    check (default: every check of the round) passed. `/readyz`, its quick answer for kubelet and
    `/readyz/<name>` all answer with it; the verdict lines below only explain it."""
    if draining or fresh is None:
        return False
    return fresh.ok if names is None else all(fresh.results[name].ok for name in names)


def check_verdict(view: View, name: str) -> Verdict:
    """A check passes only when the latest round is fresh and its result passed (is_ready's terms)."""
    if view.snapshot is None:
        return Verdict(name, False, "no check round finished yet")
    if view.stale:
        return Verdict(name, False, f"stale: last round ended {view.age or 0:.1f}s ago")
    result = view.snapshot.results[name]
    return Verdict(name, result.ok, result.reason)


def shutdown_verdict(view: View) -> Verdict:
    return Verdict(SHUTDOWN, not view.draining, "shutting down" if view.draining else "")


@dataclass(frozen=True)
class Readiness:
    """The combined `/readyz` answer: which lines, which exclusions, passed or not."""

    ok: bool
    verdicts: tuple[Verdict, ...]
    excluded: frozenset[str]
    unknown_exclusions: tuple[str, ...]

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


def readiness(view: View, checks: Sequence[Check[Any]], exclude: Iterable[str] = ()) -> Readiness:
    """Every check plus the shutdown line; `shutdown` itself cannot be excluded."""
    names = [check.name for check in checks]
    asked = [name for raw in exclude for name in raw.split(",") if name]
    excluded = frozenset(name for name in asked if name in names)
    unknown = tuple(dict.fromkeys(name for name in asked if name not in names))
    verdicts = (shutdown_verdict(view), *(check_verdict(view, name) for name in names))
    included = [name for name in names if name not in excluded]
    return Readiness(is_ready(view.fresh, view.draining, included), verdicts, excluded, unknown)


def overall_status(view: View, checks: Sequence[Check[Any]]) -> str:
    """healthy: everything passes; unhealthy: the probe itself cannot vouch; else degraded."""
    if view.draining or not view.alive:
        return "unhealthy"
    ready = is_ready(view.fresh, view.draining, [check.name for check in checks])
    return "healthy" if ready else "degraded"


def health_body(view: View, version: str, checks: Sequence[Check[Any]]) -> dict[str, Any]:
    """The JSON body, compatible with kata-context's original health endpoint."""
    snapshot = view.snapshot
    return {
        "status": overall_status(view, checks),
        "timestamp": view.now.isoformat().replace("+00:00", "Z"),
        "version": version,
        "checkedAt": snapshot.finished_at.isoformat().replace("+00:00", "Z") if snapshot else None,
        "checks": {check.name: check_body(view, check) for check in checks},
    }


def check_body(view: View, check: Check[Any]) -> dict[str, Any]:
    """The check's own JSON from its fresh finding (None when stale), then the reason it failed."""
    verdict = check_verdict(view, check.name)
    result = view.fresh.results.get(check.name) if view.fresh else None
    body = check.body(verdict, result.found if result else None, view.snapshot)
    if not verdict.ok:
        body["error"] = verdict.reason
    return body
