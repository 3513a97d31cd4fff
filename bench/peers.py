"""The migration tools we compare against, installed into the git-ignored bench/.work/.

dbmate comes from npm (a Go binary inside the package); yoyo-migrations and Alembic (with
psycopg 3) go into a throwaway virtualenv. Each peer knows how to lay out N trivial migrations
in its own format and which command applies them, so every tool runs the same SQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import servers

WORK = Path(__file__).resolve().parent / ".work"
DBMATE = WORK / "node_modules" / "@dbmate" / "linux-x64" / "bin" / "dbmate"
VENV = WORK / "venv"
# kata-migrate as an image runs it: installed (not editable) with compiled byte code, in its own venv.
OURS_VENV = WORK / "kata-venv"
PYPI_PEERS = ("yoyo-migrations", "alembic", "psycopg[binary]")
REPO = Path(__file__).resolve().parent.parent


def statement(n: int) -> str:
    """The one trivial statement every tool applies as migration n."""
    return f"CREATE TABLE t_{n} (id int);"


def install() -> None:
    """Install what is missing; idempotent, so every bench run may call it."""
    WORK.mkdir(exist_ok=True)
    if not DBMATE.exists():
        print("bench: installing dbmate from npm into bench/.work", file=sys.stderr)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(WORK), "dbmate"], check=True)
    if not (VENV / "bin" / "alembic").exists() or not (VENV / "bin" / "yoyo").exists():
        print("bench: installing yoyo-migrations, alembic, psycopg into bench/.work/venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", *PYPI_PEERS], check=True)


def install_ours() -> None:
    """(Re)install this checkout, or BENCH_SOURCE, into bench/.work/kata-venv, as a regular install."""
    if not (OURS_VENV / "bin" / "python").exists():
        venv.create(OURS_VENV, with_pip=True)
    print(
        f"bench: installing kata-migrate from {servers.source()} into bench/.work/kata-venv", file=sys.stderr
    )
    pip = [str(OURS_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    for extra in ([], ["--no-deps", "--force-reinstall"]):  # dependencies once, the project every run
        result = subprocess.run([*pip, *extra, str(servers.source())], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip install of {servers.source()} failed:\n{result.stderr[-2000:]}")


@dataclass(frozen=True)
class Tool:
    """A migration tool: writes N migrations into a folder and gives the command applying them."""

    name: str
    write: Callable[[Path, int], None]
    command: Callable[[Path, str], list[str]]
    url_scheme: str = "postgresql"

    def env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        return {**env, "DATABASE_URL": url}


def _write_ours(folder: Path, count: int) -> None:
    for n in range(1, count + 1):
        (folder / f"{n:04d}_t{n}.sql").write_text(statement(n) + "\n")


def _ours_command(folder: Path, url: str) -> list[str]:
    return [
        str(OURS_VENV / "bin" / "kata-migrate"),
        "up",
        "--migrations",
        str(folder),
        "--log-format",
        "text",
    ]


def _write_dbmate(folder: Path, count: int) -> None:
    for n in range(1, count + 1):
        (folder / f"{n:04d}_t{n}.sql").write_text(
            f"-- migrate:up\n{statement(n)}\n\n-- migrate:down\nDROP TABLE t_{n};\n"
        )


def _dbmate_command(folder: Path, url: str) -> list[str]:
    return [str(DBMATE), "--url", url, "--migrations-dir", str(folder), "--no-dump-schema", "migrate"]


def _write_yoyo(folder: Path, count: int) -> None:
    for n in range(1, count + 1):
        (folder / f"{n:04d}_t{n}.sql").write_text(statement(n) + "\n")


def _yoyo_command(folder: Path, url: str) -> list[str]:
    return [
        str(VENV / "bin" / "yoyo"),
        "apply",
        "--no-config-file",
        "--batch",
        "--database",
        url,
        str(folder),
    ]


ALEMBIC_ENV = """
from alembic import context
from sqlalchemy import create_engine
import os

def run() -> None:
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()

run()
"""

ALEMBIC_INI = """[alembic]
script_location = {folder}
"""

ALEMBIC_REVISION = """from alembic import op

revision = "r{n:04d}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("{sql}")


def downgrade() -> None:
    op.execute("DROP TABLE t_{n}")
"""


def _write_alembic(folder: Path, count: int) -> None:
    (folder / "versions").mkdir()
    (folder / "env.py").write_text(ALEMBIC_ENV)
    (folder / "script.py.mako").write_text("")
    (folder / "alembic.ini").write_text(ALEMBIC_INI.format(folder=folder))
    for n in range(1, count + 1):
        down = f'"r{n - 1:04d}"' if n > 1 else "None"
        (folder / "versions" / f"r{n:04d}_t{n}.py").write_text(
            ALEMBIC_REVISION.format(n=n, down=down, sql=statement(n))
        )


def _alembic_command(folder: Path, url: str) -> list[str]:
    return [str(VENV / "bin" / "alembic"), "-c", str(folder / "alembic.ini"), "upgrade", "head"]


OURS = Tool("kata-migrate", _write_ours, _ours_command)
DBMATE_TOOL = Tool("dbmate", _write_dbmate, _dbmate_command)
YOYO = Tool("yoyo", _write_yoyo, _yoyo_command, url_scheme="postgresql+psycopg")
ALEMBIC = Tool("alembic", _write_alembic, _alembic_command, url_scheme="postgresql+psycopg")
TOOLS = (OURS, DBMATE_TOOL, YOYO, ALEMBIC)
