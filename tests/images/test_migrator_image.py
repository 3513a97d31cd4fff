"""The migrator image run as the Job and the schema-wait init container in deploy/k8s run it:
their command and args, user 10001, read-only root filesystem, every capability dropped."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from localk8s.containers import (
    MIGRATOR_IMAGE,
    PROBE_IMAGE,
    VERSION,
    ManifestContainer,
    diff,
    job,
    podman,
    remove,
    ulimits,
)
from localk8s.database import PASSWORDS, DeployedDatabase, Secrets, one_url
from localk8s.manifests import ROOT, container_spec
from localpg.throwaway import PostgresServer
from schema.snapshot import SNAPSHOT_DIR

pytestmark = pytest.mark.usefixtures("images")
MIGRATIONS = sorted(int(p.name.split("_")[0]) for p in (ROOT / "migrations").glob("[0-9]*_*.sql"))
# The Job's own limits bound every run here: connect deadline plus lock wait plus margin.
RUN_TIMEOUT = 300


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Container names made by a test, removed after it."""
    made: list[str] = []
    yield made
    for name in made:
        remove(name)


def wait_for_schema(secrets: Secrets) -> ManifestContainer:
    return ManifestContainer(container_spec("Deployment", "kata-context", "wait-for-schema"), secrets)


def run(
    container: ManifestContainer, names: list[str], *, writable: bool = False
) -> subprocess.CompletedProcess[str]:
    names.append(f"kata-test-{uuid.uuid4().hex[:12]}")
    return subprocess.run(
        container.podman_run(names[-1], writable=writable),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def log_events(log: str) -> list[dict[str, Any]]:
    """The JSON log lines a migrator container wrote."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def events(log: str) -> list[str]:
    """The event names of the JSON log lines a migrator container wrote."""
    return [event["event"] for event in log_events(log)]


def applied(database: DeployedDatabase) -> list[int]:
    rows = database.server.psql(
        "SELECT version FROM public.kata_schema_migrations ORDER BY version", database.name
    )
    return [int(row) for row in rows.splitlines()]


def test_the_job_applies_every_migration_then_exits_0_with_nothing_to_do(
    deployed: DeployedDatabase, names: list[str]
) -> None:
    database = deployed
    first = run(job(database.secrets()), names)
    assert first.returncode == 0, first.stderr
    assert applied(database) == MIGRATIONS
    owner = database.server.psql(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'messages'", database.name
    )
    assert owner == "kata_owner"

    second = run(job(database.secrets()), names)
    assert second.returncode == 0, second.stderr
    assert applied(database) == MIGRATIONS
    assert events(first.stderr).count("migration_applied") == len(MIGRATIONS)
    assert "migration_applied" not in events(second.stderr)
    assert "nothing_to_do" in events(second.stderr)
    assert not [pw for pw in PASSWORDS.values() if pw in first.stderr + second.stderr]


def test_the_job_exits_4_and_creates_nothing_on_a_server_without_pgvector(
    pg15_with_roles: PostgresServer, names: list[str]
) -> None:
    name = pg15_with_roles.create_database()
    result = run(job(one_url(pg15_with_roles.url(name))), names)
    assert result.returncode == 4, result.stderr
    assert "vector" in result.stderr
    tables = pg15_with_roles.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name)
    assert tables == "0"


def test_the_job_exits_2_on_a_malformed_database_url(names: list[str]) -> None:
    result = run(job(one_url("postgres://user:secret-pw@[::1/kata")), names)
    assert result.returncode == 2, result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "secret-pw" not in result.stderr


def test_wait_for_schema_exits_0_once_the_job_has_applied_the_migrations(
    deployed: DeployedDatabase, names: list[str]
) -> None:
    names.append(f"kata-test-wait-{uuid.uuid4().hex[:12]}")
    waiting = subprocess.run(
        wait_for_schema(deployed.secrets()).podman_run(names[-1], detach=True),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    assert waiting.stdout.strip()
    # Still waiting before the Job ran: the schema is not there (its --timeout is 600 s).
    state = podman("inspect", "--format", "{{.State.Running}}", names[-1], check=True).stdout.strip()
    assert state == "true"

    assert run(job(deployed.secrets()), names).returncode == 0
    finished = podman("wait", names[0], timeout=RUN_TIMEOUT, check=True)
    assert finished.stdout.strip() == "0", podman("logs", names[0]).stderr


@pytest.mark.parametrize("container", ["job", "wait-for-schema"])
def test_the_migrator_writes_nothing_to_the_image_filesystem(
    container: str, deployed: DeployedDatabase, names: list[str]
) -> None:
    """Run with a writable root this once: a write would show in `podman diff` instead of
    failing (and perhaps being swallowed) on the read-only root the manifests give it."""
    assert run(job(deployed.secrets()), names, writable=True).returncode == 0
    if container == "wait-for-schema":
        assert run(wait_for_schema(deployed.secrets()), names, writable=True).returncode == 0
    assert diff(names[-1]) == []


def test_both_images_share_every_layer_and_the_runtime_venv_holds_no_build_tools() -> None:
    layers = [
        podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", image, check=True).stdout
        for image in (MIGRATOR_IMAGE, PROBE_IMAGE)
    ]
    assert layers[0] == layers[1]
    assert len(json.loads(layers[0])) >= 3  # base, dependencies, project

    probe = "import importlib.util as u; print(*[m for m in NAMES if u.find_spec(m)])".replace(
        "NAMES", "('pip', 'setuptools', 'pkg_resources', '_distutils_hack', 'wheel')"
    )
    found = podman(
        "run", "--rm", *ulimits(), "--entrypoint", "/opt/venv/bin/python", MIGRATOR_IMAGE, "-c", probe
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == ""


def test_labels_tags_and_manifests_carry_the_version_of_pyproject() -> None:
    labels = json.loads(
        podman("image", "inspect", "--format", "{{json .Labels}}", PROBE_IMAGE, check=True).stdout
    )
    assert labels["org.opencontainers.image.version"] == VERSION
    base = labels["org.opencontainers.image.base.name"]
    assert podman("image", "exists", base).returncode == 0, (
        f"base.name {base!r} is not the base it was built on"
    )
    assert job(one_url("x")).spec["image"] == MIGRATOR_IMAGE
    assert container_spec("Deployment", "kata-context", "db-probe")["image"] == PROBE_IMAGE


@pytest.mark.parametrize("image", [MIGRATOR_IMAGE, PROBE_IMAGE])
def test_no_pip_setting_or_ca_bundle_of_the_build_reaches_the_image(image: str) -> None:
    """scripts/images.sh hands pip its config and CA as build secrets: none may be in a layer."""
    env = json.loads(podman("image", "inspect", "--format", "{{json .Config.Env}}", image, check=True).stdout)
    assert not [e for e in env if e.startswith(("PIP_", "REQUESTS_CA_BUNDLE", "SSL_CERT"))], env
    root = Path(podman("image", "mount", image, check=True).stdout.strip())
    try:
        leaked = [p for name in ("pip.conf", "pip-ca.pem") for p in root.rglob(name)]
        assert leaked == []
        assert not (root / "run" / "secrets").exists()
    finally:
        podman("image", "unmount", image)


def test_the_bytecode_in_the_image_is_current_so_no_start_compiles_anything(names: list[str]) -> None:
    """As root and with bytecode writes allowed this once, Python would rewrite any stale or
    missing .pyc it imports: an empty diff shows every import is served from the image's."""
    names.append(f"kata-test-pyc-{uuid.uuid4().hex[:12]}")
    modules = "probe.app, probe.cli, migrator.cli, aiohttp.web, asyncpg, prometheus_client, yaml"
    result = podman(
        *("run", "--name", names[-1], "--passwd=false", "--user", "0", "--env", "PYTHONDONTWRITEBYTECODE="),
        *ulimits(),
        *("--entrypoint", "/opt/venv/bin/python", PROBE_IMAGE, "-c", f"import {modules}"),
    )
    assert result.returncode == 0, result.stderr
    assert diff(names[-1]) == []


@pytest.fixture
def older_migrator(tmp_path: Path) -> Iterator[str]:
    """The release before: the built migrator image less its latest migration and that one's
    snapshot (0006 and 0006.json: an image that ships 0001-0005), one layer on top (built offline,
    removed after the test)."""
    packaged = podman(
        "run",
        "--rm",
        *ulimits(),
        "--entrypoint",
        "python",
        MIGRATOR_IMAGE,
        "-c",
        "import kata_migrations; print(kata_migrations.__path__[0])",
        check=True,
    ).stdout.strip()
    latest = max((ROOT / "migrations").glob("[0-9]*_*.sql"))
    removed = [f"{packaged}/{latest.name}", f"{packaged}/{SNAPSHOT_DIR}/{latest.name[:4]}.json"]
    context = tmp_path / "older-image"
    context.mkdir()
    # The files belong to root; the image's own user is put back after. Exec form: no shell needed.
    (context / "Containerfile").write_text(
        f"FROM {MIGRATOR_IMAGE}\nUSER 0:0\nRUN {json.dumps(['rm', *removed])}\nUSER 10001:10001\n"
    )
    tag = f"localhost/kata-context/db-migrator-older-test:{uuid.uuid4().hex[:12]}"
    podman(
        "build",
        "--quiet",
        "--pull=never",
        *ulimits(),
        "-t",
        tag,
        "-f",
        str(context / "Containerfile"),
        str(context),
        timeout=300,
        check=True,
    )
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag)


def test_the_latest_migration_upgrades_the_older_images_database_which_the_older_image_then_accepts(
    deployed: DeployedDatabase, names: list[str], older_migrator: str
) -> None:
    """The release lifecycle with both images: the older release's Job migrates to 5 and the
    application writes; this release's Job applies 0006 alone; `kubectl rollout undo` brings back
    the older pods' init container and the older release's Job, which run on the ledger at 6
    (`ledger_ahead` naming 0006: an added index is no reason to refuse)."""
    secrets = deployed.secrets()
    older_job = job(secrets)
    older_job = replace(older_job, spec={**older_job.spec, "image": older_migrator})
    first = run(older_job, names)
    assert first.returncode == 0, first.stderr
    assert applied(deployed) == MIGRATIONS[:-1]
    deployed.server.psql(
        "INSERT INTO contexts (id, name) VALUES ('00000000-0000-0000-0000-0000000000a0', 'parent'); "
        "INSERT INTO contexts (name, parent_id, fork_version) "
        "SELECT 'fork ' || g, '00000000-0000-0000-0000-0000000000a0', 1 FROM generate_series(1, 3) g",
        deployed.name,
    )

    upgrade = run(job(secrets), names)
    assert upgrade.returncode == 0, upgrade.stderr
    newest = max((ROOT / "migrations").glob("[0-9]*_*.sql")).name
    assert [e["file"] for e in log_events(upgrade.stderr) if e["event"] == "migration_applied"] == [newest]
    assert applied(deployed) == MIGRATIONS

    older_wait = wait_for_schema(secrets)
    older_wait = replace(older_wait, spec={**older_wait.spec, "image": older_migrator})
    for container in (older_wait, older_job):
        older = run(container, names)
        assert older.returncode == 0, older.stderr
        [ahead] = [e for e in log_events(older.stderr) if e["event"] == "ledger_ahead"]
        assert (ahead["ahead"], ahead["latest"]) == ([newest], MIGRATIONS[-2]), older.stderr
    assert applied(deployed) == MIGRATIONS
