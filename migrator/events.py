"""One event per line on stderr, JSON or text, with every known password scrubbed out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
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
        scrubbers: Iterable[Callable[[str], str]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.fmt = fmt
        self.scrubbers = list(scrubbers)
        self.clock = clock

    def add_scrubber(self, scrubber: Callable[[str], str]) -> None:
        self.scrubbers.append(scrubber)

    def scrub(self, text: str) -> str:
        for scrubber in self.scrubbers:
            text = scrubber(text)
        return text

    def emit(self, event: str, message: str = "", *, level: str = "info", **fields: object) -> None:
        now = self.clock()
        if self.fmt == "json":
            line = json_line(now, level, {"event": event, **({"msg": message} if message else {}), **fields})
        else:
            stamp = utc_timestamp(now)
            extras = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
            line = " ".join(part for part in (stamp, level.upper(), event, message, extras) if part)
        self.stream.write(self.scrub(line) + "\n")
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
