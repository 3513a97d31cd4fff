"""The log line both programs write, JSON (`{"ts", "level", ...}` with a UTC millisecond stamp) or
text; the option that chooses between them; the `logging` formatters the probe writes them with;
and the escaping that keeps any text written for a reader (a log line, `status`) on one line and
free of terminal control."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from pgconn.config import Option, Sources, scan_flag

FORMATS: Final = ("json", "text")

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


def text_line(seconds: float, level: str, event: str, message: str, fields: Mapping[str, object]) -> str:
    """`2026-11-26T09:17:51.454Z INFO event message key=value ...`: one event, one line, nothing
    for a terminal to act on, whatever a server notice, the ledger, a file or POD_NAME holds."""
    extras = " ".join(f"{key}={text_value(value)}" for key, value in fields.items())
    parts = (utc_timestamp(seconds), level.upper(), event, message, extras)
    return escape_text(" ".join(part for part in parts if part))


def text_value(value: object) -> str:
    """A value as `key=value`, quoted when it would otherwise read as more than one value."""
    text = str(value)
    if text and not any(c in text for c in ' "=\\') and not UNSAFE.search(text):
        return text
    # Control characters are left to the line's escaping, so each reads the same everywhere.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_log_format(name: str, text: str) -> str | None:
    """json or text, any case. Any other value (of the variable or the file: argparse refuses a
    bad flag) is ignored rather than an error, because the format must be known before an error
    can be written: the default applies."""
    chosen = text.strip().lower()
    return chosen if chosen in FORMATS else None


def log_format_option(env: str) -> Option[str | None]:
    """The log format under the program's own variable; the flag, key and rules are the same."""
    return Option(
        "log_format",
        env,
        "--log-format",
        None,
        parse_log_format,
        "stderr events: json or text (default: json unless a terminal)",
        "{" + ",".join(FORMATS) + "}",
        choices=FORMATS,
    )


def chosen_format(sources: Sources, option: Option[str | None], *, tty: bool) -> str:
    """The option's value; unset, text on a terminal (a person reads it) and JSON otherwise."""
    return sources.optional(option) or ("text" if tty else "json")


def early_format(
    argv: Sequence[str], env: Mapping[str, str], option: Option[str | None], *, tty: bool
) -> str:
    """The format before the command line is parsed, so that the parser's own refusal of an
    argument (or of the config file) is written in the format asked for."""
    return chosen_format(Sources({option.key: scan_flag(argv, option)}, env), option, tty=tty)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "event", ...}`. Nothing is scrubbed: no secret is ever
    put into a record (see `pgconn.dsn`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "msg": record.getMessage(), **record_fields(record)}
        return json_line(record.created, record.levelname.lower(), fields)


class TextFormatter(logging.Formatter):
    """`ts LEVEL event msg key=value ...`, the migrator's text line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        event = str(fields.pop("event", ""))
        return text_line(record.created, record.levelname, event, record.getMessage(), fields)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What was passed through `extra=`, and the exception's type (only: a driver's message can
    carry a host or user name)."""
    fields = {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES}
    if record.exc_info and record.exc_info[0] is not None:
        fields["exception"] = record.exc_info[0].__name__
    return fields


FORMATTERS: Final[Mapping[str, type[logging.Formatter]]] = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(stream: TextIO = sys.stderr, fmt: str = "json") -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
