"""Fuzz the probe's HTTP surface with hypothesis: any path, query string, method token and headers
get an answer below 500, nothing is logged at error level, and the app keeps serving afterwards."""

from __future__ import annotations

import asyncio
import logging
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from localpg.throwaway import free_port
from probe.app import create_app, server_options
from probe.server import ProbeSite
from probe.settings import ProbeSettings
from tests.conftest import Database

KNOWN = [
    "/",
    "/livez",
    "/healthz",
    "/readyz",
    "/readyz/",
    "/readyz/database",
    "/readyz/pgvector",
    "/readyz/schema",
    "/metrics",
    "/readyz/shutdown",
]
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@ /\\\x00é", max_size=20)
PATHS = st.one_of(
    st.sampled_from(KNOWN),
    st.builds(lambda base, extra: base + extra, st.sampled_from(KNOWN), SEGMENT),
    st.lists(SEGMENT, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)
QUERY = st.lists(
    st.tuples(st.sampled_from(["verbose", "exclude", "x", "", "exclude[]", "verbose=1"]) | SEGMENT, SEGMENT),
    max_size=6,
)
HEADER_VALUE = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c") + "é", max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Accept",
            "Accept-Encoding",
            "Content-Type",
            "X-Forwarded-For",
            "Range",
            "If-None-Match",
            "Cookie",
            "Authorization",
            "Content-Length",
            "Host",
            "Connection",
        ]
    )
    | st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=15),
    st.one_of(
        st.sampled_from(["application/json", "text/plain", "*/*", "application/json;q=0.1", "0", "-1"]),
        HEADER_VALUE,
    ),
    max_size=6,
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) | st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=12
)


@dataclass
class Harness:
    """The app served as kata-probe serves it (probe.server.ProbeSite) on a private loop; requests
    go as raw bytes, so any method and header reaches the server."""

    loop: asyncio.AbstractEventLoop
    port: int

    def request(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> int:
        target = quote(path if path.startswith("/") else "/" + path, safe="/%!$&'()*+,;=:@~") + (
            "?" + urlencode(query) if query else ""
        )
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers.items()
            if name.lower() not in ("host", "connection")
        ]
        raw = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("utf-8")

        async def send() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(raw)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), 10)
                await asyncio.wait_for(reader.read(), 10)
            finally:
                writer.close()
            match = re.match(rb"HTTP/1\.[01] (\d{3}) ", status_line)
            assert match, f"no status line: {status_line!r}"
            return int(match[1])

        return self.loop.run_until_complete(send())


@pytest.fixture
def harness(migrated: Database) -> Iterator[Harness]:
    settings = ProbeSettings.from_values(
        {"DATABASE_URL": migrated.url, "PROBE_INTERVAL": "0.5", "PROBE_TIMEOUT": "0.3"}
    )
    loop = asyncio.new_event_loop()
    options = server_options(settings)
    runner = web.AppRunner(create_app(settings, CollectorRegistry()), **options)
    loop.run_until_complete(runner.setup())
    port = free_port()
    loop.run_until_complete(ProbeSite(runner, "127.0.0.1", port, options).start())
    try:
        yield Harness(loop, port)
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY, headers=HEADERS)
def test_no_input_makes_the_probe_fail(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
) -> None:
    with caplog.at_level(logging.DEBUG):
        status = harness.request(method, path, query, headers)
        assert status < 500, (method, path, query, headers)
        if method not in ("GET", "HEAD"):  # served by no route: refused, never answered
            assert status in (400, 404, 405), (method, path, status)
        assert harness.request("GET", "/livez", [], {}) == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    caplog.clear()
