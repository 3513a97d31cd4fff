"""The images, built once per session by scripts/images.sh (layer cache: seconds when nothing
changed), and the migrated databases and probe containers the image tests run against."""

from __future__ import annotations

import subprocess

import pytest

from localk8s.containers import ROOT, unavailable_reason

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
