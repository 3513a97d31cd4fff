"""The statements that restore degraded drift while the application keeps writing: indexes built
CONCURRENTLY, constraints added NOT VALID and validated apart. Pure: from the expected and the live
schema to SQL text, which `kata-migrate repair` runs and `plan --repair` prints. This module is the
plan; the steps are built by schema/restore_indexes.py and schema/restore_constraints.py.

Breaking drift (a table, column, type, enum label or extension) is never restored: that would
invent data or guess a type. A name the live schema already uses for something else is not taken
over. Both are reported as refusals, and nothing is planned while there is one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from schema.drift import DEGRADED, Drift
from schema.ledger import SCHEMA
from schema.model import Schema
from schema.restore_constraints import constraint_step
from schema.restore_indexes import index_step
from schema.restore_step import KEY_KINDS, Step

# Steps run in this order: an index-backed key before a FOREIGN KEY that may reference it.
ORDER: Final = (*KEY_KINDS, "foreign key", "check constraint", "index")


@dataclass(frozen=True)
class Restoration:
    """The steps that restore the degraded drift, or why repair will not run."""

    steps: tuple[Step, ...] = ()
    breaking: tuple[Drift, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.breaking or self.conflicts)

    def script(self) -> str:
        """Every step as one no-transaction script, a comment line before each: what `plan
        --repair` prints and `repair` runs, statement by statement (so its line numbers match)."""
        blocks = [
            "\n".join([f"-- {step.describe()}", *(f"{sql};" for sql in step.statements)])
            for step in self.steps
        ]
        return "\n\n".join(blocks) + "\n" if blocks else ""


def plan_restoration(
    expected: Schema, live: Schema, drifts: Iterable[Drift], namespace: str = SCHEMA
) -> Restoration:
    """The steps that restore each degraded drift of `live` against `expected` (the snapshot the
    drift was found with); breaking drift and taken names refuse the whole plan."""
    drifts = tuple(drifts)
    breaking = tuple(d for d in drifts if d.class_ != DEGRADED)
    steps: list[Step] = []
    conflicts: list[str] = []
    for drift in drifts:
        if drift.class_ != DEGRADED:
            continue
        planned = _plan_one(drift, expected, live, namespace)
        if isinstance(planned, Step):
            steps.append(planned)
        else:
            conflicts.append(planned)
    if breaking or conflicts:
        return Restoration(breaking=breaking, conflicts=tuple(conflicts))
    steps.sort(key=lambda s: (ORDER.index(s.kind) if s.kind in ORDER else len(ORDER), s.action == "validate"))
    return Restoration(steps=tuple(steps))


def _plan_one(drift: Drift, expected: Schema, live: Schema, namespace: str) -> Step | str:
    if drift.kind == "index":
        index = next((i for i in expected.indexes if i.name == drift.object), None)
        if index is not None:
            return index_step(index, live, namespace)
    else:
        found = (c for c in expected.constraints if (c.kind, c.name) == (drift.kind, drift.object))
        constraint = next(found, None)
        if constraint is not None:
            return constraint_step(constraint, live, namespace)
    return f"{drift.kind} {drift.object}: repair cannot restore it ({drift.problem}); restore it by hand"
