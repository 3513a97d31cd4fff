"""squawk over the migrations as `make lint` runs it: the shipped files pass, and a new migration
that would hold a long ACCESS EXCLUSIVE (or SHARE) lock on a filled table fails the lint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "migrations"

LOCKING = {
    # Scans the whole table under ACCESS EXCLUSIVE: every read and write waits for it.
    "check without NOT VALID": (
        "ALTER TABLE contexts ADD CONSTRAINT contexts_name_short CHECK (length(name) < 200);\n",
        "constraint-missing-not-valid",
    ),
    "foreign key without NOT VALID": (
        "ALTER TABLE messages ADD CONSTRAINT messages_parent_fk FOREIGN KEY (context_id) "
        "REFERENCES contexts (id);\n",
        "constraint-missing-not-valid",
    ),
    # Blocks every write to the table for the whole build.
    "index without CONCURRENTLY": (
        "CREATE INDEX messages_created_at_idx ON messages (created_at);\n",
        "require-concurrent-index-creation",
    ),
    "index without CONCURRENTLY, no-transaction file": (
        "-- migrate: no-transaction\n"
        "CREATE INDEX IF NOT EXISTS messages_created_at_idx ON messages (created_at);\n",
        "require-concurrent-index-creation",
    ),
}
# Written as 0003 is: re-runnable (squawk's prefer-robust-stmts wants that of a no-transaction file).
LOCK_SAFE = (
    "-- migrate: no-transaction\n"
    "ALTER TABLE contexts\n"
    "    -- squawk-ignore ban-drop-constraint\n"
    "    DROP CONSTRAINT IF EXISTS contexts_name_short,\n"
    "    ADD CONSTRAINT contexts_name_short CHECK (length(name) < 200) NOT VALID;\n"
    "ALTER TABLE contexts VALIDATE CONSTRAINT contexts_name_short;\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_created_at_idx ON messages (created_at);\n"
)


def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    """`make lint-migrations` with this interpreter's environment, on `directory`."""
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "lint-migrations",
            f"VENV={sys.prefix}",
            f"MIGRATIONS_DIR={directory}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_new_migration(tmp_path: Path, sql: str) -> Path:
    """The shipped migrations plus `sql` as the next version."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS.glob("*.sql"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "0099_new.sql").write_text(sql)
    return folder


def test_the_shipped_migrations_pass_squawk() -> None:
    result = lint(MIGRATIONS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 transactional and 5 no-transaction migration(s) pass" in result.stdout


@pytest.mark.parametrize("case", sorted(LOCKING))
def test_a_new_migration_taking_a_long_lock_fails_the_lint(tmp_path: Path, case: str) -> None:
    sql, rule = LOCKING[case]
    result = lint(with_new_migration(tmp_path, sql))
    assert result.returncode != 0
    assert rule in result.stdout + result.stderr
    assert "0099_new.sql" in result.stdout + result.stderr


def test_the_same_change_written_lock_safe_passes(tmp_path: Path) -> None:
    result = lint(with_new_migration(tmp_path, LOCK_SAFE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_no_transaction_directive_after_another_directive_is_linted_as_no_transaction(
    tmp_path: Path,
) -> None:
    # As the migrator reads the header: directives in any order, blank lines between them.
    header = "-- migrate: contract\n\n-- Migrate: No-Transaction\n"
    body = LOCK_SAFE.removeprefix("-- migrate: no-transaction\n")
    result = lint(with_new_migration(tmp_path, header + body))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 transactional and 6 no-transaction migration(s) pass" in result.stdout
