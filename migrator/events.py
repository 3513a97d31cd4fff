"""One event per line on stderr, JSON or text, with every known password scrubbed out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TextIO

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
        stamp = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        stamp = stamp.replace("+00:00", "Z")
        if self.fmt == "json":
            record: dict[str, object] = {"ts": stamp, "level": level, "event": event}
            if message:
                record["msg"] = message
            record.update(fields)
            line = json.dumps(record, default=str, ensure_ascii=False)
        else:
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
