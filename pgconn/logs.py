"""The one JSON log line both programs write: `{"ts", "level", ...}` with a UTC millisecond stamp,
and the `logging` formatter the probe uses to write it."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def utc_timestamp(seconds: float) -> str:
    """`2026-11-26T09:17:51.454Z`: Unix time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(seconds: float, level: str, fields: Mapping[str, object]) -> str:
    """One log line: the stamp and level first, then the fields in the order given."""
    record: dict[str, object] = {"ts": utc_timestamp(seconds), "level": level, **fields}
    return json.dumps(record, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "event", ...}`. Nothing is scrubbed: no secret is ever
    put into a record (see `pgconn.dsn`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "msg": record.getMessage()}
        fields.update({k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES})
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a driver's message can carry a host or user name.
            fields["exception"] = record.exc_info[0].__name__
        return json_line(record.created, record.levelname.lower(), fields)


def configure_logging(stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
