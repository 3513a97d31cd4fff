"""Clients and operators that do odd things: CONNECT, ?verbose=false, half-sent headers, idle
keep-alive connections, and the signals nobody meant for the probe."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Database
from tests.probe.conftest import ProbeProcess, probe_env, ready_database, until, wait_listening
from tests.probe.test_app import ClientFactory, start_probe, status_of

pytestmark = pytest.mark.asyncio
StartProbe = Callable[..., ProbeProcess]
# The server must close within its idle timeout (1 s here); the margin is for a loaded machine.
CLOSE_MARGIN = 30.0


async def listening_probe(
    probe_process: StartProbe, database: Database, migrations_dir: Path, **extra: str
) -> ProbeProcess:
    """A `python -m probe` process on a ready database, once it has bound its port."""
    ready_database(database, migrations_dir)
    probe = probe_process(probe_env(database.url, migrations_dir, **extra))
    async with aiohttp.ClientSession() as session:
        await wait_listening(probe, session)
    return probe


async def raw_status_line(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return (await reader.readline()).strip()
    finally:
        writer.close()


async def test_connect_answers_405_like_every_other_method_it_does_not_serve(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    port = client.server.port
    assert port is not None
    for target in (b"127.0.0.1:443", b"/livez", b"/nosuch"):
        line = await raw_status_line(
            "127.0.0.1", port, b"CONNECT " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert line == b"HTTP/1.1 405 Method Not Allowed", target
    async with client.post("/livez") as response:
        assert response.status == 405


VERBOSE = ("verbose", "verbose=", "verbose=1", "verbose=true", "verbose=TRUE", "verbose=yes")


@pytest.mark.parametrize(
    ("query", "verbose"),
    [
        *((query, True) for query in VERBOSE),
        ("verbose=false", False),
        ("verbose=FALSE", False),
        ("verbose=0", False),
        ("", False),
    ],
)
async def test_verbose_false_and_0_are_not_verbose(
    aiohttp_client: ClientFactory, database: Database, migrations_dir: Path, query: str, verbose: bool
) -> None:
    ready_database(database, migrations_dir)
    client = await start_probe(aiohttp_client, database.url, migrations_dir)
    status, text = await status_of(client, f"/readyz?{query}")
    assert status == 200
    assert ("[+]database ok" in text) is verbose, text


def closed_by_server(port: int, first_bytes: bytes) -> bool:
    """Send `first_bytes`, read the answer, then whether the server closes the connection (EOF)
    before CLOSE_MARGIN; a socket timeout means it kept it open."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_MARGIN) as sock:
        sock.sendall(first_bytes)
        try:
            while sock.recv(65536):
                pass  # the response to a complete request, then EOF
        except TimeoutError:
            return False
        return True


@pytest.mark.parametrize(
    "first_bytes",
    [b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"", b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"],
    ids=["half-sent headers", "nothing sent", "idle keep-alive after a response"],
)
async def test_the_probe_closes_connections_that_send_no_complete_request_within_the_idle_timeout(
    probe_process: StartProbe, database: Database, migrations_dir: Path, first_bytes: bytes
) -> None:
    probe = await listening_probe(probe_process, database, migrations_dir, PROBE_IDLE_TIMEOUT="1")
    assert await asyncio.to_thread(closed_by_server, probe.port, first_bytes)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
async def test_sighup_drains_and_exits_0_like_sigterm(
    probe_process: StartProbe, database: Database, migrations_dir: Path, signum: signal.Signals
) -> None:
    probe = await listening_probe(probe_process, database, migrations_dir, PROBE_SHUTDOWN_DELAY="0.5")
    probe.signal(signum)
    assert await asyncio.to_thread(probe.wait, 20) == 0
    events = [json.loads(line) for line in probe.log_lines()]
    names = [e["event"] for e in events]
    assert names[-1] == "stopped"
    assert names.index("signal") < names.index("draining") < names.index("stopped"), names
    assert events[names.index("signal")]["signal"] == signum.name


async def test_sigusr1_and_sigusr2_are_logged_and_ignored(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    probe = await listening_probe(probe_process, database, migrations_dir, PROBE_SHUTDOWN_DELAY="0.1")
    async with aiohttp.ClientSession() as session:
        for signum in (signal.SIGUSR1, signal.SIGUSR2):
            probe.signal(signum)

            async def logged(name: str = signum.name) -> bool:
                return f'"signal_ignored", "signal": "{name}"' in probe.logs()

            await until(logged, 10, f"{signum.name} logged")
        async with session.get(probe.base_url + "/livez") as response:
            assert response.status == 200
    probe.signal(signal.SIGTERM)
    assert await asyncio.to_thread(probe.wait, 20) == 0


async def raw_head(port: int, request: bytes) -> tuple[bytes, dict[str, str]]:
    """The status line and headers the probe answers to `request`, sent as raw bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_MARGIN)
    finally:
        writer.close()
    status, *lines = head.decode("latin-1").strip().split("\r\n")
    return status.encode(), {
        name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)
    }


# RFC 9110: a method is any token; the probe serves GET and HEAD and must say so for any other.
# Methods are case-sensitive: `get` is not GET.
METHOD_TOKENS = ["FOO", "BREW", "M-SEARCH", "PROPFIND", "X!#$%&'*+-.^_`|~9", "PATCH", "OPTIONS", "get"]


async def test_any_method_token_the_probe_does_not_serve_answers_405_with_allow(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    probe = await listening_probe(probe_process, database, migrations_dir)
    for method in METHOD_TOKENS:
        for target in ("/livez", "/readyz/database", "/metrics"):
            request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            status, headers = await raw_head(probe.port, request)
            assert status == b"HTTP/1.1 405 Method Not Allowed", (method, target, status)
            assert headers["allow"] == "GET,HEAD", (method, target)
        status, _ = await raw_head(probe.port, f"{method} /nosuch HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == b"HTTP/1.1 404 Not Found", method


async def test_options_asterisk_answers_405_with_allow(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    probe = await listening_probe(probe_process, database, migrations_dir)
    status, headers = await raw_head(probe.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == b"HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET,HEAD"


MALFORMED = {
    "no request line": b"garbage\r\n\r\n",
    "bad method character": b"G(T /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without a colon": b"GET /livez HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "unknown version": b"GET /livez HTTP/9.9\r\nHost: x\r\n\r\n",
    "unknown minor version": b"GET /livez HTTP/1.2\r\nHost: x\r\n\r\n",
    "asterisk with GET": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    "space before the colon": b"GET /livez HTTP/1.1\r\nHost : x\r\n\r\n",
    "control character in the target": b"GET /li\x01vez HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS on the HTTP port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
    "second request malformed": (
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nBad Header\r\n\r\n"
    ),
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_answers_400_and_logs_nothing_at_error_level(
    probe_process: StartProbe, database: Database, migrations_dir: Path, request_bytes: bytes
) -> None:
    """docs/probe.md: requests are not logged. A client's garbage is no error of the probe's."""
    probe = await listening_probe(probe_process, database, migrations_dir)
    reader, writer = await asyncio.open_connection("127.0.0.1", probe.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), CLOSE_MARGIN)  # until the probe closes
    finally:
        writer.close()
    statuses = re.findall(rb"^HTTP/1\.[01] (\d{3}) ", answer, re.M)
    assert statuses and statuses[-1] == b"400", answer
    async with aiohttp.ClientSession() as session, session.get(probe.base_url + "/livez") as response:
        assert response.status == 200  # still serving
    probe.signal(signal.SIGTERM)
    assert await asyncio.to_thread(probe.wait, 20) == 0
    levels = [json.loads(line)["level"] for line in probe.log_lines()]
    assert "error" not in levels and "Error handling request" not in probe.logs(), probe.logs()
