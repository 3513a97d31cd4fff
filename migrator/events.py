"""One event per line on stderr, JSON or text. Nothing is scrubbed from a line: the password never
enters one (URLs render redacted, errors are built from safe parts), and replacing a short
password by substring would mangle keys like `application_name`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TextIO

from pgconn.logs import json_line, utc_timestamp

FORMATS = ("json", "text")


class EventLog:
    """Writes `event` lines; stdout stays free for a command's own output."""

    def __init__(
        self,
        stream: TextIO,
        *,
        fmt: str = "json",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.fmt = fmt
        self.clock = clock

    def emit(self, event: str, message: str = "", *, level: str = "info", **fields: object) -> None:
        now = self.clock()
        if self.fmt == "json":
            line = json_line(now, level, {"event": event, **({"msg": message} if message else {}), **fields})
        else:
            stamp = utc_timestamp(now)
            extras = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
            line = " ".join(part for part in (stamp, level.upper(), event, message, extras) if part)
        self.stream.write(line + "\n")
        self.stream.flush()

    def info(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="info", **fields)

    def warning(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="warning", **fields)

    def error(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="error", **fields)


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text
