"""JSON log lines on stderr, one per event, with the database password scrubbed from every one."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "event", ...}`; `scrub` removes secrets from the line."""

    def __init__(self, scrub: Callable[[str], str] = lambda text: text) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES})
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a driver's message can carry a host or user name.
            entry["exception"] = record.exc_info[0].__name__
        return self._scrub(json.dumps(entry, default=str))


def configure_logging(scrub: Callable[[str], str], stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(scrub))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
