"""`status` rendering is a pure function of the catalog and the ledger rows: no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from migrator.status import status_document, status_text
from schema.catalog import Catalog, parse_migration
from schema.ledger import AppliedMigration
from schema.verdicts import state_of

WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def row(migration_file: str, checksum: str, kind: str = "applied") -> AppliedMigration:
    version, _, rest = migration_file.partition("_")
    return AppliedMigration(
        int(version), rest.removesuffix(".sql"), checksum, WHEN, 1.5, "kata-migrate@pod", kind, migration_file
    )


def catalog(*files: tuple[str, str]) -> Catalog:
    return Catalog(tuple(parse_migration(name, text.encode()) for name, text in files))


def test_each_version_shows_its_state_and_a_missing_file_keeps_its_name() -> None:
    files = catalog(("0001_a.sql", "SELECT 1;"), ("0002_b.sql", "SELECT 2;"), ("0004_d.sql", "SELECT 4;"))
    a, b = files.migrations[0], files.migrations[1]
    state = state_of(files, (row("0001_a.sql", a.checksum), row("0002_b.sql", "old"), row("3_c.sql", "gone")))
    document = status_document(files, state)
    assert json.loads(json.dumps(document, default=str))["pending"] == [4]
    states = {e["version"]: (e["state"], e["file"]) for e in document["migrations"]}  # type: ignore[attr-defined]
    assert states == {
        1: ("applied", "0001_a.sql"),
        2: ("changed", "0002_b.sql"),
        3: ("missing", "3_c.sql"),
        4: ("pending", "0004_d.sql"),
    }
    assert b.filename == "0002_b.sql"
    text = status_text(files, state)
    assert text.splitlines()[0] == "schema version 3, this image's latest 4, 1 pending, CHANGED FILES"
    assert "     3  missing   3_c.sql  2026-11-26T09:00:00+00:00  by kata-migrate@pod" in text


def test_a_baseline_row_never_counts_as_a_changed_file_even_when_its_file_changed() -> None:
    files = catalog(("0001_a.sql", "SELECT 1;"))
    state = state_of(files, (row("0001_a.sql", "recorded-before-an-edit", kind="baseline"),))
    assert not state.files_changed
    assert status_text(files, state).splitlines()[1].split()[:2] == ["1", "baseline"]


def test_versions_above_the_images_latest_are_ahead_and_not_changed_files() -> None:
    files = catalog(("0001_a.sql", "SELECT 1;"), ("0003_c.sql", "SELECT 3;"))
    a = files.migrations[0]
    rows = (row("0001_a.sql", a.checksum), row("0004_d.sql", "newer"), row("0006_f.sql", "newer", "baseline"))
    state = state_of(files, rows)
    assert (state.ahead, state.missing, state.pending, state.files_changed) == ((4, 6), (), (3,), False)
    document = status_document(files, state)
    assert document["ahead"] == [4, 6]
    states = {e["version"]: (e["state"], e["file"]) for e in document["migrations"]}  # type: ignore[attr-defined]
    assert states[4] == ("ahead", "0004_d.sql") and states[6] == ("ahead", "0006_f.sql")
    first = status_text(files, state).splitlines()[0]
    assert first == "schema version 6, this image's latest 3, 1 pending, ledger ahead of this image by 2"
    # At or below this image's latest, a version without its file is still a changed file.
    gap = state_of(files, (row("0001_a.sql", a.checksum), row("0002_b.sql", "gone")))
    assert (gap.missing, gap.ahead, gap.files_changed) == ((2,), (), True)
