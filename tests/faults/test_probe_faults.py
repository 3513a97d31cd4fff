"""The probe under database faults, as a real process against real servers.

For every fault: /livez stays 200 and answers within the manifests' liveness timeoutSeconds
throughout, /readyz turns 503 within interval + timeout + the manifests' readiness periodSeconds
(what kubelet can notice), returns to 200 within the same bound of the recovery, the error is
classified, memory does not grow from one fault cycle to the next, and no exception
escapes into the log. Frozen and killed servers are in tests/probe/test_outage.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable

import asyncpg

from localpg.install import as_service_user
from localpg.relay import Relay
from localpg.throwaway import SUPERUSER, SUPERUSER_PASSWORD, PostgresServer
from tests.conftest import Database, require_system_package
from tests.faults.conftest import migrate
from tests.faults.probe_process import LivenessWatch, ProbeProcess, liveness_bound, readiness_bound
from tests.pgbouncer import PGBOUNCER, running_pgbouncer, wait_listening

FIRST_READY = 20.0
MIB = 2**20
RSS_GROWTH_LIMIT = 3 * MIB
# What /healthz says before the process listens and before its first round ends.
PENDING = ("", "no check round finished yet")
SLOT_TRIES = 50


def hold_fault(probe: ProbeProcess, rounds: int = 2) -> None:
    """Let `rounds` more failed rounds pass (read from /metrics) while the fault lasts."""
    target = probe.failed_rounds() + rounds
    probe.until(
        lambda: probe.failed_rounds() >= target, rounds * readiness_bound(), f"{rounds} failed rounds"
    )
    assert probe.get("/readyz").status == 503


def exercise(
    probe: ProbeProcess,
    inject: Callable[[], None],
    recover: Callable[[], None],
    error: str | tuple[str, ...],
    cycles: int = 2,
) -> None:
    """Ready first, then `cycles` times: inject, see 503 and `error` (or one of them), recover, see 200."""
    errors = (error,) if isinstance(error, str) else error
    probe.until_ready(200, FIRST_READY)
    rss = []
    for _ in range(cycles):
        with LivenessWatch(probe) as watch:
            inject()
            probe.until_ready(503, readiness_bound())
            probe.until(
                lambda: probe.database_error() in errors, readiness_bound(), f"database error in {errors}"
            )
            hold_fault(probe)
            recover()
            probe.until_ready(200, readiness_bound())
        assert watch.statuses and set(watch.statuses) == {200}, watch.statuses
        assert watch.slowest < liveness_bound(), f"slowest /livez {watch.slowest * 1000:.0f} ms"
        rss.append(probe.rss())
    assert rss[-1] - rss[0] < RSS_GROWTH_LIMIT, f"RSS grew {(rss[-1] - rss[0]) / MIB:.1f} MiB"
    assert probe.unhandled() == []


def never_ready(probe: ProbeProcess, error: str) -> None:
    """A fault present from the start: 503 with `error`, liveness fast, memory flat over rounds."""
    probe.until(lambda: probe.get("/livez").status == 200, FIRST_READY, "the probe listens")
    with LivenessWatch(probe) as watch:
        probe.until(lambda: probe.database_error() not in PENDING, FIRST_READY, "a round's database error")
        assert probe.database_error() == error
        assert probe.get("/readyz").status == 503
        hold_fault(probe, 2)
        before = probe.rss()
        hold_fault(probe, 6)
        after = probe.rss()
    assert set(watch.statuses) == {200}, watch.statuses
    assert watch.slowest < liveness_bound(), f"slowest /livez {watch.slowest * 1000:.0f} ms"
    assert after - before < RSS_GROWTH_LIMIT, f"RSS grew {(after - before) / MIB:.1f} MiB"
    assert probe.unhandled() == []


def through(url: str, port: int) -> str:
    return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{port}/", url)


def test_listening_but_never_answering(
    migrated: Database, relay: Relay, start_probe: Callable[..., ProbeProcess]
) -> None:
    probe = start_probe(through(migrated.url, relay.port))
    exercise(probe, lambda: relay.set_mode("silent"), lambda: relay.set_mode("forward"), "timeout")


def test_silent_from_the_start(start_probe: Callable[..., ProbeProcess]) -> None:
    silent = Relay(None, mode="silent").start()
    try:
        never_ready(
            start_probe(f"postgresql://app:secret@127.0.0.1:{silent.port}/app?sslmode=disable"), "timeout"
        )
    finally:
        silent.stop()


def test_tls_required_but_unavailable(migrated: Database, start_probe: Callable[..., ProbeProcess]) -> None:
    """The wheel's PostgreSQL is built without OpenSSL: sslmode=require can never connect."""
    probe = start_probe(migrated.url.replace("sslmode=disable", "sslmode=require"))
    never_ready(probe, "TLS error")


def test_wrong_password_then_fixed(migrated: Database, start_probe: Callable[..., ProbeProcess]) -> None:
    server, name = migrated.server, migrated.name
    role = f"probe_{name[-8:]}"
    server.create_role(role, "right-password-1")
    migrated.psql(f'GRANT SELECT ON kata_schema_migrations TO "{role}"')
    probe = start_probe(server.url(name, user=role, password="wrong-password-2"))
    never_ready(probe, "authentication failed")
    server.psql(f"ALTER ROLE \"{role}\" PASSWORD 'wrong-password-2'")
    probe.until_ready(200, readiness_bound())
    assert "wrong-password-2" not in probe.logs()
    assert probe.unhandled() == []


def test_database_dropped_while_running(migrated: Database, start_probe: Callable[..., ProbeProcess]) -> None:
    server, name = migrated.server, migrated.name
    probe = start_probe(migrated.url)

    def recreate() -> None:
        server.psql(f'CREATE DATABASE "{name}"')
        migrate(migrated.url)

    exercise(probe, lambda: server.drop_database(name), recreate, "database does not exist")


def test_max_connections_exhausted(
    small_pg: PostgresServer, start_probe: Callable[..., ProbeProcess]
) -> None:
    """Every non-reserved slot taken: the probe's next connection is refused (53300)."""
    name = small_pg.create_database()
    small_pg.create_role("app", "app-password")
    migrate(small_pg.url(name))
    small_pg.psql('GRANT SELECT ON kata_schema_migrations TO "app"', name)
    url = small_pg.url(name, user="app", password="app-password")
    probe = start_probe(url)
    loop = asyncio.new_event_loop()
    fillers: list[asyncpg.Connection] = []

    async def fill() -> None:
        while True:
            try:
                fillers.append(await asyncpg.connect(url, server_settings={"application_name": "filler"}))
            except asyncpg.TooManyConnectionsError:
                return

    # Every client backend but the fillers and this query's own: the probe's, including one still
    # authenticating (no user name yet), which a filter on the probe's name would miss, letting
    # the probe finish connecting after the slots look taken.
    probe_backends = (
        "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND application_name IS DISTINCT FROM 'filler'"
    )

    def exhaust() -> None:
        # An established connection survives a full server: cut the probe's, as a restart or a
        # network blip would, and take the freed slot before its next round reconnects.
        # The probe may win the freed slot back a few times; a count of tries, not a clock,
        # bounds the race (each try takes the slot at once: it is usually the first or second).
        for _ in range(SLOT_TRIES):
            loop.run_until_complete(fill())
            if small_pg.psql(f"SELECT count(*) {probe_backends}") == "0":
                return
            small_pg.psql(f"SELECT pg_terminate_backend(pid, 1000) {probe_backends}")
        raise AssertionError(f"the probe won its connection slot back {SLOT_TRIES} times in a row")

    def release() -> None:
        while fillers:
            loop.run_until_complete(fillers.pop().close())

    try:
        exercise(probe, exhaust, release, "too many connections")
    finally:
        release()
        loop.close()
        small_pg.drop_database(name)


def test_pgbouncer_stopped_and_restarted(
    migrated: Database, start_probe: Callable[..., ProbeProcess]
) -> None:
    require_system_package(PGBOUNCER, "pgbouncer")
    users = {SUPERUSER: SUPERUSER_PASSWORD}
    with running_pgbouncer(migrated.server, users) as bouncer:
        probe = start_probe(bouncer.url(migrated.name, SUPERUSER, SUPERUSER_PASSWORD))

        def stop() -> None:
            bouncer.process.terminate()
            bouncer.process.wait(10)

        def restart() -> None:
            bouncer.process = subprocess.Popen(
                as_service_user([str(PGBOUNCER), str(bouncer.directory / "pgbouncer.ini")]),
                stderr=subprocess.DEVNULL,
            )
            wait_listening(bouncer.port, bouncer.process)

        exercise(probe, stop, restart, ("connection refused", "connection lost"))
