"""Every log event the probe can emit is named in docs/probe.md's Logs section, read from the code
(the `extra={"event": ...}` of each logging call)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_event_the_probe_emits_is_in_the_logs_section_of_docs_probe_md() -> None:
    events: set[str] = set()
    for path in (REPO / "probe").rglob("*.py"):
        events.update(re.findall(r"\"event\": \"([a-z_]+)\"", path.read_text(encoding="utf-8")))
    assert {"started", "ready", "not_ready", "round_crashed"} <= events, sorted(events)
    text = (REPO / "docs" / "probe.md").read_text(encoding="utf-8")
    logs = re.split(r"^## Logs$", text, maxsplit=1, flags=re.MULTILINE)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", logs))
    assert not events - documented, sorted(events - documented)
