"""The run's final event as the container's termination message: kubelet copies the file into the
pod's status after the container exits, so `kubectl describe pod` and the Job's tooling show why a
run ended (exit code, its meaning, the failing file) without reading the logs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from migrator.errors import EXIT_CODES, MigratorError, exit_status

TERMINATION_LOG_ENV: Final = "MIGRATOR_TERMINATION_LOG"
# Where kubelet looks unless a container's terminationMessagePath says otherwise.
DEFAULT_PATH: Final = "/dev/termination-log"
# kubelet keeps at most 4096 bytes of the file per container (and 12 KiB for all of a pod's
# containers together, then less each); a message cut by kubelet would be invalid JSON.
MAX_BYTES: Final = 4096
ELLIPSIS: Final = " …"


def meaning(code: int) -> str:
    """The exit-code table's meaning of `code` (one row may list several codes: `129 / 130 / 143`)."""
    for codes, text in EXIT_CODES.items():
        if str(code) in codes.split(" / "):
            return text
    return "not an exit code of kata-migrate"


@dataclass(frozen=True)
class Outcome:
    """What a verb that succeeded achieved: the files `up` applied, the version the schema is at."""

    applied: tuple[str, ...] = ()
    version: int | None = None

    def describe(self, command: str) -> str:
        at = f"the schema is at version {self.version}" if self.version is not None else ""
        if command != "up":
            return "; ".join(part for part in (f"`kata-migrate {command}` finished", at) if part)
        if not self.applied:
            return f"nothing to apply; {at}"
        return f"applied {len(self.applied)} migration(s): {', '.join(self.applied)}; {at}"


@dataclass(frozen=True)
class FinalEvent:
    """What the message says: the exit code and its meaning, the log's final event and message, and
    the facts an operator acts on (the failing file, or what was applied and the version)."""

    exit_code: int
    event: str
    message: str
    details: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def of_error(cls, error: MigratorError) -> FinalEvent:
        # An error about one file carries where in it (MigrationFailed: filename, line, column).
        details = {
            key: value
            for key, value in (
                ("file", getattr(error, "filename", None)),
                ("line", getattr(error, "line", None)),
                ("column", getattr(error, "column", None)),
            )
            if value is not None
        }
        return cls(exit_status(error), error.event, str(error), details)

    @classmethod
    def of_success(cls, command: str, outcome: Outcome) -> FinalEvent:
        details: dict[str, object] = {"command": command}
        if command == "up":
            details["applied"] = len(outcome.applied)
        if outcome.version is not None:
            details["version"] = outcome.version
        return cls(0, "done", outcome.describe(command), details)

    def headline(self) -> dict[str, object]:
        return {"exit_code": self.exit_code, "meaning": meaning(self.exit_code), "event": self.event}

    def document(self, message: str) -> dict[str, object]:
        return {**self.headline(), "msg": message, **self.details}

    def render(self, limit: int = MAX_BYTES) -> bytes:
        """One JSON object of at most `limit` bytes; a long message is cut, marked with an ellipsis."""
        message = self.message
        data = encode(self.document(message))
        while len(data) > limit and message:
            message = message[: max(0, len(message) - (len(data) - limit) - len(ELLIPSIS))]
            data = encode(self.document(message + ELLIPSIS))
        if len(data) > limit:  # the details alone are too long: the code and the event still fit
            data = encode(self.headline())
        return data


def encode(document: Mapping[str, object]) -> bytes:
    # ASCII, every other character escaped: names from the ledger may carry control, bidi or
    # unpaired surrogate characters, which must neither reach `kubectl describe` raw nor fail here.
    return json.dumps(document, ensure_ascii=True, default=str).encode("ascii")


@dataclass(frozen=True)
class TerminationLog:
    """The file kubelet reads: MIGRATOR_TERMINATION_LOG, else /dev/termination-log; empty: none."""

    path: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TerminationLog:
        return cls(env.get(TERMINATION_LOG_ENV, DEFAULT_PATH))

    def write(self, event: FinalEvent) -> None:
        """Replace the file's content with the event, only when the file exists and is writable.

        kubelet creates the file for every container; it is never created here, so a run on a
        laptop or in podman (no such file, and /dev read-only or root-owned) writes nothing, and a
        failure to write never changes the exit code: the log has the same event. O_NONBLOCK: a FIFO
        without a reader is refused instead of blocking the exit.
        """
        if not self.path:
            return
        with contextlib.suppress(OSError):
            descriptor = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_NOCTTY | os.O_NONBLOCK)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(event.render())
