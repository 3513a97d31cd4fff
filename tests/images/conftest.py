"""The images, built once per session by scripts/images.sh (layer cache: seconds when nothing
changed), and the migrated databases and probe containers the image tests run against."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from localk8s.containers import unavailable_reason
from localk8s.database import DeployedDatabase, deploy_database
from localk8s.manifests import ROOT
from localpg.throwaway import PostgresServer, running_server, wheel_bin_dir
from tests.conftest import SYSTEM_PG15, require_system_package

# A cold build: the Debian stand-in base (about 70-170 s) and both images (about 1 min).
BUILD_TIMEOUT = 1200


@pytest.fixture(scope="session")
def images() -> None:
    """Both images, current with this checkout; skipped (a failure in CI) without podman."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [str(ROOT / "scripts" / "images.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"scripts/images.sh failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def k8s_pg() -> Iterator[PostgresServer]:
    """A server of the image tests' own: deploy/roles.sql makes cluster-wide roles on it."""
    with running_server(wheel_bin_dir(16)) as server:
        yield server


@pytest.fixture
def deployed(k8s_pg: PostgresServer) -> Iterator[DeployedDatabase]:
    """A fresh database prepared as docs/deploy.md says (roles, passwords), not migrated."""
    database = deploy_database(k8s_pg)
    yield database
    k8s_pg.drop_database(database.name)


@pytest.fixture(scope="session")
def pg15_with_roles() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL 15 (no pgvector) with the roles the Job's settings name."""
    require_system_package(SYSTEM_PG15 / "postgres", "postgresql-15")
    with running_server(SYSTEM_PG15) as server:
        for role in ("kata_app", "kata_probe"):
            server.psql(f'CREATE ROLE "{role}"')
        yield server
