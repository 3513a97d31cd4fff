"""One event per line on stderr, JSON or text. Nothing is scrubbed from a line: the password never
enters one (URLs render redacted, errors are built from safe parts), and replacing a short
password by substring would mangle keys like `application_name`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from pgconn.logs import FORMATS, json_line, text_line

__all__ = ["FORMATS", "EventLog"]


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
        # Fields every event carries while set (the file being applied); see `scoped`.
        self.scope: dict[str, object] = {}
        self._transient_shown = False

    @contextlib.contextmanager
    def scoped(self, **fields: object) -> Iterator[None]:
        """Add `fields` to every event emitted inside the block (server notices name the file)."""
        saved = self.scope
        self.scope = {**saved, **fields}
        try:
            yield
        finally:
            self.scope = saved

    def emit(self, event: str, message: str = "", *, level: str = "info", **fields: object) -> None:
        self._write(event, message, level, fields, transient=False)

    def transient(self, event: str, message: str = "", **fields: object) -> None:
        """Like `info`, but on a terminal (text format) it rewrites the current line instead, so a
        long statement's progress is one updating line; the next event replaces it."""
        self._write(event, message, "info", fields, transient=True)

    def _write(
        self, event: str, message: str, level: str, fields: dict[str, object], *, transient: bool
    ) -> None:
        now = self.clock()
        fields = {**self.scope, **fields}
        if self.fmt == "json":
            line = json_line(now, level, {"event": event, **({"msg": message} if message else {}), **fields})
        else:
            line = text_line(now, level, event, message, fields)
        on_terminal = self.fmt == "text" and self.stream.isatty()
        clear = "\r\x1b[K" if on_terminal and (transient or self._transient_shown) else ""
        end = "" if on_terminal and transient else "\n"
        self._transient_shown = on_terminal and transient
        self.stream.write(clear + line + end)
        self.stream.flush()

    def info(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="info", **fields)

    def warning(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="warning", **fields)

    def error(self, event: str, message: str = "", **fields: object) -> None:
        self.emit(event, message, level="error", **fields)
