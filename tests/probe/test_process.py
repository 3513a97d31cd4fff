"""`python -m probe` as kubelet and Prometheus meet it: signals, secrets, load, metric format."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from localk8s.manifests import sidecar
from localpg.throwaway import free_port
from tests.conftest import Database, require_system_package
from tests.metric_families import exposition_families, registry_families
from tests.probe.conftest import ProbeProcess, probe_env, ready_database, until, wait_listening
from tests.prometheus import PROMETHEUS, PROMTOOL, running_prometheus

pytestmark = pytest.mark.asyncio
StartProbe = Callable[..., ProbeProcess]
SENTINEL = "Sentinel-pw-4242"
PATHS = (
    "/livez",
    "/healthz",
    "/readyz",
    "/readyz?verbose",
    "/readyz/database",
    "/readyz/schema",
    "/readyz/pgvector",
    "/metrics",
    "/nosuch",
)
SHUTDOWN_PATHS = ("/readyz", "/livez", "/metrics")


async def status(session: aiohttp.ClientSession, url: str, **kwargs: str) -> int:
    async with session.get(url, headers=kwargs or None) as response:
        await response.read()
        return response.status


async def verdict(session: aiohttp.ClientSession, url: str) -> str:
    """The status; a failure says " stale" when the body blames the monitor's last round's age."""
    async with session.get(url) as response:
        stale = response.status != 200 and b'"error":"stale: ' in await response.read()
        return f"{response.status}{' stale' if stale else ''}"


async def wait_status(session: aiohttp.ClientSession, url: str, expected: int, timeout: float = 10) -> float:
    async def reached() -> bool:
        return await status(session, url) == expected

    return await until(reached, timeout, f"{url} answers {expected}")


async def all_bodies(session: aiohttp.ClientSession, base_url: str) -> str:
    texts = []
    for path in PATHS:
        for accept in ("*/*", "application/json"):
            async with session.get(base_url + path, headers={"Accept": accept}) as response:
                texts.append(await response.text())
    return "\n".join(texts)


async def answered(session: aiohttp.ClientSession, url: str) -> int:
    """The status, or 0 once the process no longer answers (it stopped listening)."""
    try:
        return await status(session, url)
    except aiohttp.ClientConnectionError:
        return 0


def log_time(probe: ProbeProcess, event: str) -> datetime:
    stamps = [json.loads(line)["ts"] for line in probe.log_lines() if json.loads(line)["event"] == event]
    assert len(stamps) == 1, (event, stamps)
    return datetime.fromisoformat(stamps[0])


async def test_sigterm_fails_readiness_at_once_keeps_serving_then_exits_zero(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    drain = 1.5
    probe = probe_process(probe_env(database.url, migrations_dir, PROBE_SHUTDOWN_DELAY=str(drain)))
    seen: list[tuple[int, int, int]] = []  # (/readyz, /livez, /metrics) per poll, SIGTERM to exit
    async with aiohttp.ClientSession() as session:
        await wait_listening(probe, session)
        await wait_status(session, probe.base_url + "/readyz", 200)
        probe.signal(signal.SIGTERM)

        async def exited() -> bool:
            ready, live, metrics = [await answered(session, probe.base_url + p) for p in SHUTDOWN_PATHS]
            seen.append((ready, live, metrics))
            if seen[-1][0] == 503 and len([s for s in seen if s[0] == 503]) == 1:
                async with session.get(probe.base_url + "/readyz?verbose") as response:
                    assert "[-]shutdown failed: shutting down" in await response.text()
                async with session.get(probe.base_url + "/healthz") as response:
                    assert (await response.json())["status"] == "unhealthy"
            return seen[-1] == (0, 0, 0)

        await until(exited, drain + 10, "the probe stops listening after its drain")
    assert await asyncio.to_thread(probe.wait, 10) == 0
    # Order, not speed: ready, then 503 from SIGTERM on while liveness and metrics still answer,
    # then nothing. Readiness never comes back once it has gone.
    readiness = [r for r, _live, _metrics in seen]
    assert 503 in readiness, readiness
    first_503 = readiness.index(503)
    assert set(readiness[:first_503]) <= {200} and 200 not in readiness[first_503:], readiness
    assert (503, 200, 200) in seen, seen
    events = [json.loads(line)["event"] for line in probe.log_lines()]
    assert events[-2:] == ["draining", "stopped"]
    # The drain, by the probe's own clock in its log: a lower bound no slow machine can break.
    assert (log_time(probe, "stopped") - log_time(probe, "draining")).total_seconds() >= drain - 0.001


async def test_password_never_appears_in_bodies_metrics_or_logs(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    database.server.create_role("probe_sentinel_user", SENTINEL)
    good = database.server.url(database.name, user="probe_sentinel_user", password=SENTINEL)
    wrong = database.server.url(database.name, user="postgres", password=SENTINEL)
    down = f"postgresql://probe_sentinel_user:{SENTINEL}@127.0.0.1:{free_port()}/nodb?sslmode=disable"
    expected_errors = {good: None, wrong: "authentication failed", down: "connection refused"}
    probes = {url: probe_process(probe_env(url, migrations_dir)) for url in expected_errors}
    async with aiohttp.ClientSession() as session:
        for url, probe in probes.items():
            await wait_listening(probe, session)

            async def reported(probe: ProbeProcess = probe, url: str = url) -> bool:
                async with session.get(probe.base_url + "/healthz") as response:
                    database_check = (await response.json())["checks"]["database"]
                return bool(database_check.get("error") == expected_errors[url])

            await until(reported, 10, f"the database check reports {expected_errors[url]}")
            bodies = await all_bodies(session, probe.base_url)
            assert SENTINEL not in bodies
            assert "probe_sentinel_user" not in bodies
    for probe in probes.values():
        probe.signal(signal.SIGTERM)
    for probe in probes.values():
        await asyncio.to_thread(probe.wait, 15)
        logs = probe.logs()
        assert ":***@127.0.0.1" in logs  # the URL is logged, redacted
        assert SENTINEL not in logs
        for line in probe.log_lines():
            json.loads(line)


async def test_2000_concurrent_requests_add_no_database_transactions(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    ready_database(database, migrations_dir)
    # The deployed interval and timeout: liveness holds the monitor to 3 x interval + timeout,
    # and a loaded 2-core machine can spend seconds on a burst of 2,000 requests.
    deployed = {key: sidecar().setting(key) for key in ("PROBE_INTERVAL", "PROBE_TIMEOUT")}
    env = probe_env(database.url, migrations_dir, **deployed)
    interval = float(deployed["PROBE_INTERVAL"])

    def transactions() -> int:
        sql = f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database.name}'"
        return int(database.server.psql(sql))

    def sessions() -> int:
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database.name}'"
        return int(database.server.psql(sql))

    async def no_sessions() -> bool:  # a backend flushes its counters when it exits
        return sessions() == 0

    await until(no_sessions, 10, "setup sessions gone")
    before = transactions()
    started = time.monotonic()
    probe = probe_process(env)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await wait_listening(probe, session)
        await wait_status(session, probe.base_url + "/readyz", 200)
        paths = ("/readyz", "/healthz", "/livez", "/metrics", "/readyz/schema")
        urls = [probe.base_url + paths[i % 5] for i in range(2000)]
        answers = await asyncio.gather(*(verdict(session, url) for url in urls))
        rounds_before_stop = await rounds_run(session, probe.base_url)
    # Metrics never depend on a round. Readiness may honestly turn 503 if the burst delays a
    # round past its timeout. Liveness never depends on the database: on a busy 2-core machine
    # the burst can starve the monitor past 3 x interval + timeout (answers then take seconds),
    # and liveness says so ("stale"); any other 503, or any other answer, is a failure.
    by_path = {path: {answers[i] for i in range(2000) if paths[i % 5] == path} for path in paths}
    assert by_path["/metrics"] == {"200"}, by_path
    assert by_path["/healthz"] | by_path["/livez"] <= {"200", "503 stale"}, by_path
    readiness = {answer.partition(" ")[0] for answer in by_path["/readyz"] | by_path["/readyz/schema"]}
    assert readiness <= {"200", "503"}, by_path
    probe.signal(signal.SIGTERM)
    assert await asyncio.to_thread(probe.wait, 10) == 0
    lifetime = time.monotonic() - started
    await until(no_sessions, 10, "the probe's session gone")
    used = transactions() - before
    per_round = 5  # SELECT 1, backend pid, pgvector, ledger exists, ledger rows
    # The database sees rounds, not requests: at most the rounds the probe counted, those the
    # drain allowed plus one in flight at SIGTERM, and one's worth for connection set-up and
    # a reconnect after a timed-out round; far from one transaction per request.
    drain_rounds = int(float(env.get("PROBE_SHUTDOWN_DELAY", "0")) / interval) + 1
    assert used <= per_round * (rounds_before_stop + drain_rounds + 2), (used, rounds_before_stop, lifetime)
    assert used < 2000 / 50
    print(f"\n{used} transactions for 2000 requests over {lifetime:.1f}s ({rounds_before_stop} rounds)")


async def rounds_run(session: aiohttp.ClientSession, base_url: str) -> int:
    """Rounds the probe ran so far, from its own counter of database checks."""
    async with session.get(base_url + "/metrics") as response:
        text = await response.text()
    return round(
        sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith('kata_db_checks_total{check="database"')
        )
    )


async def test_metrics_pass_promtool_check_metrics(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    require_system_package(PROMTOOL, "prometheus")
    ready_database(database, migrations_dir)
    probe = probe_process(probe_env(database.url, migrations_dir))
    async with aiohttp.ClientSession() as session:
        await wait_listening(probe, session)
        await wait_status(session, probe.base_url + "/readyz", 200)
        async with session.get(probe.base_url + "/metrics") as response:
            exposition = await response.read()
    argv = [str(PROMTOOL), "check", "metrics"]
    result = await asyncio.to_thread(subprocess.run, argv, input=exposition, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    exposed = exposition_families(exposition.decode())
    missing = {name: kind for name, kind in registry_families().items() if exposed.get(name) != kind}
    assert not missing, missing


async def test_real_prometheus_scrapes_kata_db_up_1(
    probe_process: StartProbe, database: Database, migrations_dir: Path
) -> None:
    require_system_package(PROMETHEUS, "prometheus")
    ready_database(database, migrations_dir)
    probe = probe_process(probe_env(database.url, migrations_dir))
    async with aiohttp.ClientSession() as session:
        await wait_listening(probe, session)
        await wait_status(session, probe.base_url + "/readyz", 200)
    with running_prometheus(f"127.0.0.1:{probe.port}") as prometheus:

        async def scraped_up() -> bool:
            result = await asyncio.to_thread(prometheus.query, 'kata_db_up{job="kata-probe"}')
            return bool(result) and result[0]["value"][1] == "1"

        await until(scraped_up, 20, "Prometheus has kata_db_up 1")
        [target] = await asyncio.to_thread(prometheus.targets)
        assert target["health"] == "up", target
        version = await asyncio.to_thread(prometheus.query, "kata_db_build_info")
        assert version[0]["metric"]["version"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("port: 8081\ncolour: blue\n", "unknown setting 'colour'"),
        ("interval: soon\n", "PROBE_INTERVAL='soon' is not a number of seconds"),
        ("- a list\n", "must be a mapping"),
    ],
)
async def test_bad_configuration_exits_2_with_a_clear_message(
    probe_process: StartProbe, migrations_dir: Path, tmp_path: Path, config: str, message: str
) -> None:
    (tmp_path / "probe.yaml").write_text(config)
    env = {"DATABASE_URL": f"postgresql://u:{SENTINEL}@127.0.0.1:1/db", "MIGRATIONS_DIR": str(migrations_dir)}
    probe = probe_process(env, "--config", str(tmp_path / "probe.yaml"))
    assert await asyncio.to_thread(probe.wait, 15) == 2
    [line] = probe.log_lines()
    assert message in json.loads(line)["msg"]
