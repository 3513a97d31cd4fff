"""Fuzz the probe's HTTP surface with hypothesis: any path, query string, method and headers
get an answer below 500, and the app keeps serving afterwards."""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from probe.app import create_app, server_options
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
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])


@dataclass
class Harness:
    """The app on a private loop; requests go as raw bytes, so any header reaches the server."""

    loop: asyncio.AbstractEventLoop
    server: TestServer

    def request(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> int:
        target = quote(path if path.startswith("/") else "/" + path, safe="/%!$&'()*+,;=:@~") + (
            "?" + urlencode(query) if query else ""
        )
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers.items()
            if name.lower() not in ("host", "connection")
        ]
        raw = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("utf-8")

        async def send() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
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
def harness(migrated_database: Database) -> Iterator[Harness]:
    settings = ProbeSettings.from_values(
        {"DATABASE_URL": migrated_database.url, "PROBE_INTERVAL": "0.5", "PROBE_TIMEOUT": "0.3"}
    )
    loop = asyncio.new_event_loop()
    server = TestServer(create_app(settings, CollectorRegistry()), host="127.0.0.1")
    loop.run_until_complete(server.start_server(**server_options(settings)))  # as kata-probe serves
    try:
        yield Harness(loop, server)
    finally:
        loop.run_until_complete(server.close())
        loop.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY, headers=HEADERS)
def test_no_input_makes_the_probe_fail(
    harness: Harness, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    status = harness.request(method, path, query, headers)
    assert status < 500, (method, path, query, headers)
    assert harness.request("GET", "/livez", [], {}) == 200
