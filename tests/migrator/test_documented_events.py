"""Every log event the migrator can emit is named in docs/migrator.md: the names are read from the
code (each `log.info("event", ...)`-style call and each error class's `event`), not from a list
kept beside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A call of EventLog's emitting methods with the event's name first, over line breaks too.
CALL = re.compile(r"\.(?:info|warning|error|emit|transient)\(\s*\"([a-z_]+)\"")
# An error class's `event = "..."` (the base class's annotated default is never raised as such),
# and a name chosen by a condition: `event = "a" if ... else "b"`.
ASSIGNED = re.compile(r"^\s*event = \"([a-z_]+)\"(?: if .+ else \"([a-z_]+)\")?$", re.MULTILINE)


def emitted_events(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(CALL.findall(text))
        for first, second in ASSIGNED.findall(text):
            names.update(name for name in (first, second) if name)
    return names


def test_every_event_the_migrator_emits_is_in_docs_migrator_md() -> None:
    events = emitted_events(REPO / "migrator")
    assert len(events) > 50, sorted(events)  # the reading above found the calls at all
    assert {"lock_blocked", "statement_progress", "blocked_by_locks", "nothing_to_repair"} <= events
    documented = set(re.findall(r"`([a-z_]+)`", (REPO / "docs" / "migrator.md").read_text(encoding="utf-8")))
    assert not events - documented, sorted(events - documented)
