"""The one JSON log line both programs write: `{"ts", "level", ...}` with a UTC millisecond stamp,
the `logging` formatter the probe uses to write it, and the escaping that keeps any text written
for a reader (a log line, `status`) on one line and free of terminal control."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# What must never reach a reader raw: C0 controls (a line feed forges a log line, ESC starts a
# terminal sequence), DEL, C1 controls (U+009B is a one-character CSI to some terminals, U+0085
# ends a line for others), the Unicode line and paragraph separators, the bidirectional
# embeddings, overrides and isolates (they reorder what a reader sees, "Trojan Source"), and lone
# surrogates (the environment's undecodable bytes, which a strict UTF-8 stream cannot write).
UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape_text(text: str) -> str:
    """`text` with every unsafe character written as its escape (`\\n`, `\\x1b`, `\\u2028`):
    one line, shown as it is, whatever a server, a file, the ledger or the environment put in it."""
    return UNSAFE.sub(_escaped, text)


def utc_timestamp(seconds: float) -> str:
    """`2026-11-26T09:17:51.454Z`: Unix time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(seconds: float, level: str, fields: Mapping[str, object]) -> str:
    """One log line: the stamp and level first, then the fields in the order given."""
    record: dict[str, object] = {"ts": utc_timestamp(seconds), "level": level, **fields}
    # json.dumps escapes C0 only; outside strings JSON has nothing but ASCII, so any other unsafe
    # character is inside one, where `\\uXXXX` is the same string to every parser.
    text = json.dumps(record, default=str, ensure_ascii=False)
    return UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


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
