"""TLS end to end against Debian's PostgreSQL 15 (built with OpenSSL), with a CA made by `openssl` here.

The wheel's servers have no OpenSSL, so they serve as the "server without TLS" case.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from localpg.install import service_user
from localpg.throwaway import SUPERUSER_PASSWORD, PostgresServer, owned_tempdir
from pgconn.config import Sources
from pgconn.connect import connect
from pgconn.dsn import parse_database_url
from pgconn.errors import classify_error
from pgconn.settings import DatabaseSettings
from probe.app import MONITOR, create_app
from tests.conftest import SYSTEM_PG15, require_system_package
from tests.probe.conftest import make_settings, run_failing_start, until

REPO = Path(__file__).resolve().parents[1]
TLS_ERROR = "TLS error"
UNLISTED_ADDRESS = "127.0.0.2"  # loopback on Linux, absent from the certificate
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@dataclass(frozen=True)
class Certificates:
    """A CA that signed the server's certificate, and an unrelated CA that signed nothing here."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def self_signed_ca(directory: Path, name: str) -> Path:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def make_certificates(directory: Path) -> Certificates:
    """CA, server certificate for 127.0.0.1 and localhost (SAN), a second CA; key 0600 for the server."""
    ca = self_signed_ca(directory, "kata-test-ca")
    other_ca = self_signed_ca(directory, "kata-other-ca")
    (directory / "san.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = CA:FALSE\n"
        "keyUsage = digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "kata-test-ca.crt", "-CAkey", "kata-test-ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
        cwd=directory,
    )  # fmt: skip
    user = service_user()
    for path in directory.iterdir():
        path.chmod(0o600 if path.suffix == ".key" else 0o644)
        if user:
            shutil.chown(path, user, user)
    return Certificates(ca, other_ca, directory / "server.crt", directory / "server.key")


@dataclass(frozen=True)
class TlsServer:
    """The TLS-enabled PostgreSQL 15 and the certificates it was started with."""

    server: PostgresServer
    certs: Certificates

    def url(self, sslmode: str, *, host: str = "127.0.0.1", ca: Path | None = None) -> str:
        base = self.server.url().replace("sslmode=disable", f"sslmode={sslmode}")
        if ca is not None:
            base += f"&sslrootcert={ca}"
        return base.replace("@127.0.0.1:", f"@{host}:")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    require_system_package(SYSTEM_PG15 / "postgres", "postgresql-15")
    cert_dir = owned_tempdir("kata-tls-")
    certs = make_certificates(cert_dir)
    server = PostgresServer.start(
        SYSTEM_PG15,
        settings=(
            "ssl=on",
            f"ssl_cert_file={certs.server_cert}",
            f"ssl_key_file={certs.server_key}",
            f"listen_addresses=127.0.0.1,{UNLISTED_ADDRESS}",
        ),
    )
    try:
        yield TlsServer(server, certs)
    finally:
        server.stop()
        shutil.rmtree(cert_dir, ignore_errors=True)


async def connection_uses_tls(url: str) -> bool:
    conn = await connect(parse_database_url(url), application_name="kata-tls-test", timeout=10)
    try:
        return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    finally:
        await conn.close()


async def connect_failure(url: str) -> BaseException:
    """The exception connecting raises; fails the test if the connection succeeds."""
    try:
        conn = await connect(parse_database_url(url), application_name="kata-tls-test", timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return exc
    await conn.close()
    pytest.fail(f"connected although it should not have: {url}")


def test_sslmode_require_connects_with_tls(tls_server: TlsServer) -> None:
    assert asyncio.run(connection_uses_tls(tls_server.url("require")))


def test_the_tls_context_is_built_once_with_the_settings_and_serves_every_connection(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    shutil.copy(tls_server.certs.ca, ca)
    env = {"DATABASE_URL": tls_server.url("verify-full", ca=ca)}
    url = DatabaseSettings.from_sources(Sources({}, env), program="kata-tls-test").url
    ca.unlink()  # read when the settings were built: a connection that read it again would fail

    async def connections_use_tls() -> list[object]:
        used = []
        for _ in range(2):
            conn = await connect(url, application_name="kata-tls-test", timeout=10)
            try:
                used.append(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
            finally:
                await conn.close()
        return used

    assert asyncio.run(connections_use_tls()) == [True, True]


def test_sslmode_disable_on_the_same_server_is_plaintext(tls_server: TlsServer) -> None:
    # The control for the test above: pg_stat_ssl really tells the two apart.
    assert not asyncio.run(connection_uses_tls(tls_server.url("disable")))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_with_the_signing_ca_connects_for_every_san(tls_server: TlsServer, host: str) -> None:
    url = tls_server.url("verify-full", host=host, ca=tls_server.certs.ca)
    assert asyncio.run(connection_uses_tls(url))


def test_verify_full_with_another_ca_fails_as_tls_error(tls_server: TlsServer) -> None:
    exc = asyncio.run(connect_failure(tls_server.url("verify-full", ca=tls_server.certs.other_ca)))
    assert classify_error(exc) == TLS_ERROR, repr(exc)


def test_verify_full_rejects_an_address_not_in_the_certificate(tls_server: TlsServer) -> None:
    # The server also listens on 127.0.0.2, the same machine but an address the SAN does not list.
    url = tls_server.url("verify-full", host=UNLISTED_ADDRESS, ca=tls_server.certs.ca)
    exc = asyncio.run(connect_failure(url))
    assert classify_error(exc) == TLS_ERROR, repr(exc)


def test_verify_ca_accepts_an_address_not_in_the_certificate(tls_server: TlsServer) -> None:
    # The control for the test above: verify-ca checks the chain only, so the same address connects.
    url = tls_server.url("verify-ca", host=UNLISTED_ADDRESS, ca=tls_server.certs.ca)
    assert asyncio.run(connection_uses_tls(url))


def test_sslmode_require_against_a_server_without_tls_fails_as_tls_error(pg_server: PostgresServer) -> None:
    # The wheel's PostgreSQL 16 is built without OpenSSL: it answers the SSL request with "N".
    url = pg_server.url().replace("sslmode=disable", "sslmode=require")
    exc = asyncio.run(connect_failure(url))
    assert classify_error(exc) == TLS_ERROR, repr(exc)


def run_migrator(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": url, "MIGRATOR_CONNECT_TIMEOUT": "10", "MIGRATOR_LOG_FORMAT": "json"}
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args],
        env={**keep, **env},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_migrator_status_works_over_tls(tls_server: TlsServer, sslmode: str) -> None:
    database = tls_server.server.create_database()
    try:
        ca = tls_server.certs.ca if sslmode == "verify-full" else None
        url = tls_server.url(sslmode, ca=ca).replace("/postgres?", f"/{database}?")
        done = run_migrator(["status", "--json"], url)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["version"] == 0
        assert status["pending"]  # it read this empty database and the packaged migrations
    finally:
        tls_server.server.drop_database(database)


@pytest.mark.parametrize("case", ["wrong CA", "host name not in the certificate", "server without TLS"])
def test_migrator_tls_failures_exit_3_at_once_as_tls_error_without_the_driver_message(
    tls_server: TlsServer, pg_server: PostgresServer, case: str
) -> None:
    """Permanent: the first failure ends the run (no connect_retry), with a generous deadline."""
    if case == "wrong CA":
        url = tls_server.url("verify-full", ca=tls_server.certs.other_ca)
    elif case == "host name not in the certificate":
        url = tls_server.url("verify-full", host=UNLISTED_ADDRESS, ca=tls_server.certs.ca)
    else:
        url = pg_server.url().replace("sslmode=disable", "sslmode=require")
    done = run_migrator(["status", "--connect-timeout", "600"], url)
    assert done.returncode == 3, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in events] == ["start", "database_unreachable"], done.stderr
    assert TLS_ERROR in events[-1]["msg"] and "not retried" in events[-1]["msg"]
    for raw in ("certificate verify failed", "rejected ssl upgrade", "traceback"):
        assert raw not in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize("param", ["sslrootcert", "sslcert"])
def test_a_missing_certificate_file_is_a_setting_error_in_both_programs(tmp_path: Path, param: str) -> None:
    """It used to be retried for 60 s as a 'network error' (migrator) and reported as one (probe)."""
    url = f"postgresql://u:pw@127.0.0.1:1/db?sslmode=verify-full&{param}=/nonexistent/ca.pem"
    done = run_migrator(["status", "--connect-timeout", "600"], url)
    assert done.returncode == 2, done.stderr
    message = json.loads(done.stderr.splitlines()[-1])["msg"]
    assert "file '/nonexistent/ca.pem' cannot be used: No such file or directory" in message
    probe = run_failing_start(["--host", "127.0.0.1", "--port", "1"], url)
    assert probe.returncode == 2, probe.stderr
    assert "'/nonexistent/ca.pem' cannot be used: No such file or directory" in probe.stderr


@pytest.fixture
def probe_migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_first.sql").write_text("CREATE TABLE tls_first (id bigint PRIMARY KEY);\n")
    return directory


@pytest.mark.asyncio
async def test_probe_reports_a_wrong_ca_as_tls_error_without_the_driver_message(
    aiohttp_client: ClientFactory, tls_server: TlsServer, probe_migrations: Path
) -> None:
    url = tls_server.url("verify-full", ca=tls_server.certs.other_ca)
    client = await aiohttp_client(create_app(make_settings(url, probe_migrations), CollectorRegistry()))
    monitor = client.app[MONITOR]

    async def one_round() -> bool:
        return monitor.latest is not None

    await until(one_round, 10, "the first check round")
    for path, expected in (("/healthz", 200), ("/readyz", 503)):
        async with client.get(path, headers={"Accept": "application/json"}) as response:
            status, text = response.status, await response.text()
        assert status == expected, (path, text)
        assert json.loads(text)["checks"]["database"]["error"] == TLS_ERROR, text
        for raw in ("certificate", "verify failed", "kata-other-ca", "127.0.0.1", SUPERUSER_PASSWORD):
            assert raw not in text, (raw, text)
