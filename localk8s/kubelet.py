"""kubelet's HTTP probes simulated over a running container, with the timings the built
manifests give them: a GET every periodSeconds, success for a status 200-399, a timeout or a
refused connection a failure, failureThreshold failures in a row to fail (liveness: restart;
readiness: out of the Service) and successThreshold successes in a row to pass again.

A fake only because no kubelet can run here: the container, the probe and the database are real."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProbeSpec:
    """One httpGet probe of a container spec, as kubectl kustomize builds it."""

    path: str
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int

    @classmethod
    def of(cls, container: Mapping[str, Any], kind: str) -> ProbeSpec:
        probe = container[kind]
        # kubelet's defaults where a field is absent (core/v1 Probe).
        return cls(
            path=probe["httpGet"]["path"],
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
            success_threshold=int(probe.get("successThreshold", 1)),
        )


def http_get(url: str, timeout: float) -> int:
    """The status code, or 0 when the request timed out or could not connect."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http://127.0.0.1 only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass(frozen=True)
class Poll:
    at: float  # time.monotonic() when the GET was sent
    status: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass
class Prober:
    """Polls one probe from a thread on kubelet's fixed period until stopped."""

    spec: ProbeSpec
    port: int
    passing_at_start: bool  # liveness starts as success, readiness as failure (kubelet)
    polls: list[Poll] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name=f"kubelet{self.spec.path}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.spec.period + self.spec.timeout + 5)

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.port}{self.spec.path}"
        next_at = time.monotonic()
        while not self._stop.is_set():
            sent = time.monotonic()
            self.polls.append(Poll(sent, http_get(url, self.spec.timeout)))
            next_at += self.spec.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def transitions(self) -> list[tuple[float, bool]]:
        """(time, passing) each time kubelet's verdict changed, from the thresholds."""
        passing, run_ok, run_failed, changes = self.passing_at_start, 0, 0, []
        for poll in list(self.polls):
            run_ok, run_failed = (run_ok + 1, 0) if poll.ok else (0, run_failed + 1)
            if passing and run_failed >= self.spec.failure_threshold:
                passing = False
                changes.append((poll.at, False))
            elif not passing and run_ok >= self.spec.success_threshold:
                passing = True
                changes.append((poll.at, True))
        return changes

    def first(self, passing: bool, after: float) -> float | None:
        """When the verdict first became `passing` at or after `after`, or None."""
        return next((at for at, state in self.transitions() if state is passing and at >= after), None)

    def wait_for(self, passing: bool, after: float, timeout: float) -> float:
        """When the verdict became `passing` (at or after `after`); AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while (at := self.first(passing, after)) is None:
            if time.monotonic() > deadline:
                polls = [(round(p.at - after, 1), p.status) for p in list(self.polls) if p.at >= after]
                raise AssertionError(
                    f"kubelet{self.spec.path}: never {'passing' if passing else 'failing'} "
                    f"within {timeout} s; polls (seconds, status): {polls}"
                )
            time.sleep(0.1)
        return at

    def failures(self) -> list[Poll]:
        return [poll for poll in list(self.polls) if not poll.ok]
