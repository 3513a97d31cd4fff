"""The probe's HTTP server: aiohttp's, except that every request line is read by aiohttp's own
pure-Python parser, so that any method token reaches the routes (405 with `Allow`), and that a
client's malformed request is logged at debug level, not as the probe's error."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError
from aiohttp.http_parser import HttpRequestParserPy


class RequestParser(HttpRequestParserPy):
    """aiohttp's pure-Python request parser, as strict as its C one about the version (only
    HTTP/1.0 and HTTP/1.1: a server cannot answer `HTTP/9.9`), and keeping the method's case
    (RFC 9110: methods are case-sensitive, so `get` is not GET but a method the probe refuses)."""

    def parse_message(self, lines: list[bytes]) -> RawRequestMessage:
        message = super().parse_message(lines)
        if message.version not in (HttpVersion10, HttpVersion11):
            version = f"{message.version.major}.{message.version.minor}"
            raise BadStatusLine(error=f"HTTP version {version} is not served: use HTTP/1.1")
        method = lines[0].split(b" ", 1)[0].decode("ascii")  # a token: ASCII, or parsing had failed
        return message._replace(method=method)


class ProbeRequestHandler(web.RequestHandler):
    """One connection. aiohttp's C parser (llhttp) knows a fixed list of methods and answers any
    other with 400 after its first bytes, before the request line is even complete; RFC 9110 makes
    any token a method, for the server to refuse with 405 naming those it serves. The probe
    answers kubelet a few times a second, so the Python parser's cost does not matter here."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, **options: Any) -> None:
        super().__init__(manager, loop=loop, **options)
        # Built as RequestHandler builds its own parser, from the limits it keeps.
        self._parser = RequestParser(
            self,
            loop,
            self._read_bufsize,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=web.RequestPayloadError,
            max_msg_queue_size=self._max_msg_queue_size,
        )

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs every request it cannot parse as "Error handling request" at error level,
        with a traceback; that is the client's fault and says nothing about the probe (and the
        docs promise requests are not logged). Anything else stays an error."""
        if isinstance(kw.get("exc_info"), HttpProcessingError):
            self.logger.debug(*args, **kw)
        else:
            super().log_exception(*args, **kw)


class ProbeSite(web.BaseSite):
    """A TCP site whose connections ProbeRequestHandler serves, with the handler `options` (the
    keyword arguments `web.AppRunner` would pass to aiohttp's own handler)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, options: dict[str, Any]) -> None:
        super().__init__(runner)
        self.host = host
        self.port = port
        self.options = options

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()  # registers the site with the runner, which stops it on cleanup
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that is not set up

        def connection() -> ProbeRequestHandler:
            return ProbeRequestHandler(server, loop=loop, **self.options)

        self._server = await loop.create_server(connection, self.host, self.port)
