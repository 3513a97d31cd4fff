"""What `status` prints: the catalog and the ledger side by side, as text or as a JSON document.
Pure functions of a SchemaState, so they are tested without a database."""

from __future__ import annotations

from migrator.conformance import LiveReport
from migrator.drift_errors import newer_migration
from pgconn.logs import escape_text
from schema.catalog import Catalog
from schema.verdicts import SchemaState


def status_entries(catalog: Catalog, state: SchemaState) -> list[dict[str, object]]:
    """One entry per version known to the files or the ledger, with its state."""
    files = catalog.by_version()
    rows = {row.version: row for row in state.applied}
    entries: list[dict[str, object]] = []
    for version in sorted(set(rows) | set(files)):
        migration, row = files.get(version), rows.get(version)
        if version in state.changed:
            kind = "changed"
        elif version in state.missing:
            kind = "missing"
        elif version in state.ahead:
            kind = "ahead"
        else:
            kind = row.kind if row else "pending"
        entries.append(
            {
                "version": version,
                "name": migration.name if migration else row.name if row else "",
                "file": migration.filename if migration else row.file if row else None,
                "state": kind,
                "applied_at": row.applied_at.isoformat() if row else None,
                "applied_by": row.applied_by if row else None,
                "duration_ms": row.duration_ms if row else None,
            }
        )
    return entries


def status_document(
    catalog: Catalog, state: SchemaState, live: LiveReport | None = None
) -> dict[str, object]:
    return {
        "version": state.version,
        "latest": catalog.latest_version,
        "pending": list(state.pending),
        "changed": list(state.changed),
        "missing": list(state.missing),
        "ahead": list(state.ahead),
        "migrations": status_entries(catalog, state),
        "schema": live.to_json() if live else None,
    }


def live_lines(live: LiveReport) -> list[str]:
    """What the catalog itself says: unchecked, adopted from another tool, drifted, or fine."""
    if not live.checked:
        return ["live schema: not checked (no snapshots/ beside the migrations; run `make schema`)"]
    if live.unrecorded:
        u = live.unrecorded
        lines = [f"live schema: tables {', '.join(u.tables)} exist but no migration is recorded"]
        if u.drizzle:
            lines.append(f"  made by drizzle-kit: {u.drizzle.describe()}")
        satisfies = f"version {u.satisfied}" if u.satisfied else "no version"
        lines.append(f"  it satisfies the snapshot of {satisfies}: {u.advice()}")
        return [*lines, *(f"  lacks {x}" for x in u.lacking)]
    if live.drift and live.ahead:
        return [
            f"live schema: DRIFT from what this image's migrations 1..{live.snapshot} create, removed or "
            f"changed by a newer migration ({newer_migration(live.ahead)}): roll forward instead",
            *(f"  {x}" for x in live.lines),
        ]
    if live.drift:
        return [
            f"live schema: DRIFT from what migrations 1..{live.version} create:",
            *(f"  {x}" for x in live.lines),
        ]
    if live.ahead:
        return [f"live schema: holds what this image's migrations 1..{live.snapshot} create (ledger ahead)"]
    return [f"live schema: holds what migrations 1..{live.version} create"] if live.version else []


def status_text(catalog: Catalog, state: SchemaState, live: LiveReport | None = None) -> str:
    ahead = f", ledger ahead of this image by {len(state.ahead)}" if state.ahead else ""
    lines = [
        f"schema version {state.version}, this image's latest {catalog.latest_version}, "
        f"{len(state.pending)} pending" + (", CHANGED FILES" if state.files_changed else "") + ahead
    ]
    for entry in status_entries(catalog, state):
        applied = f"  {entry['applied_at']}  by {entry['applied_by']}" if entry["applied_at"] else ""
        lines.append(f"{entry['version']:>6}  {entry['state']:<8}  {entry['file'] or entry['name']}{applied}")
    lines += live_lines(live) if live else []
    # The ledger's name, file and applied_by are anyone's text: no escape sequence of theirs reaches
    # the terminal, and each entry stays one line.
    return "\n".join(escape_text(line) for line in lines) + "\n"
