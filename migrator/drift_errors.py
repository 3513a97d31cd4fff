"""The exit-6 errors: an applied migration's file changed or is gone (changed files), the live
schema differs from what the applied migrations create (drift), the ledger table is not of the
shape this program reads (ledger drift), or a verb refuses to record or restore what it cannot
prove. Each builds the line an operator reads; their code is in
migrator/errors.py's one table."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.errors import MigratorError
from schema.drift import DEGRADED, Drift
from schema.ledger import TABLE as LEDGER


class LedgerDrift(MigratorError):
    """The ledger table is there but not of the shape this program reads and writes: drift of the
    record itself, which a person must look at (it says what ran), not a setting to change."""

    exit_code = 6
    event = "ledger_drift"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            f"the ledger table {LEDGER} is not one kata-migrate can read: {'; '.join(problems)}; nothing "
            "was run. It is the record of which migrations ran here: do not drop it. If another tool made "
            f"it, rename it aside (`ALTER TABLE {LEDGER} RENAME TO kata_schema_migrations_other;`), then "
            "`kata-migrate status` names the version the schema satisfies for `kata-migrate baseline`; "
            "if it is kata-migrate's and was altered, restore the columns as docs/migrator.md describes"
        )


class ChangedFiles(MigratorError):
    """The ledger records a file that changed since it was applied, or that this image lacks."""

    exit_code = 6
    event = "drift_detected"  # the event's name is a contract: kept from before the words were split

    def __init__(self, changed: Sequence[str], missing: Sequence[str]) -> None:
        self.changed = tuple(changed)
        self.missing = tuple(missing)
        parts = []
        if changed:
            parts.append(f"changed since applied: {', '.join(changed)}")
        if missing:
            parts.append(f"applied but missing here: {', '.join(missing)}")
        super().__init__(
            f"changed migration files: {'; '.join(parts)}; nothing was run. Restore the applied files as "
            "they were (add a new migration for new changes) or run this image's matching version"
        )


def restore_advice(drift: Sequence[Drift]) -> str:
    """What restores drifted objects: `kata-migrate repair` rebuilds degraded ones (indexes,
    constraints) lock-safely; breaking ones (a table, column, type, label) hold data it cannot
    invent, so they are restored by hand from the file that creates them. No drift given: the
    advice for breaking drift."""
    classes = {d.class_ for d in drift}
    if classes == {DEGRADED}:
        return "run `kata-migrate repair` to restore them, then run again"
    if DEGRADED in classes:
        return (
            "restore each breaking object by hand (the named migration file holds its statement) and run "
            "`kata-migrate repair` for the degraded ones, then run again"
        )
    return "restore each object (the named migration file holds its statement), then run again"


class SchemaDrift(MigratorError):
    """The catalog lacks or changed objects the ledger's version promises (its snapshot)."""

    exit_code = 6
    event = "schema_drift"

    def __init__(
        self, version: int, lines: Sequence[str], *, command: str, drift: Sequence[Drift] = ()
    ) -> None:
        self.lines = tuple(lines)
        advice = restore_advice(drift)
        super().__init__(
            f"drift: the live schema differs from what migrations 1..{version} create "
            f"({len(lines)} object(s)); `{command}` ran nothing: {'; '.join(lines)}. "
            f"{advice[0].upper()}{advice[1:]}"
        )


def newer_migration(files: Sequence[str]) -> str:
    """The newer migration that removed or changed an object: named when only one is ahead."""
    return files[0] if len(files) == 1 else f"one of {', '.join(files)}"


class SchemaContracted(MigratorError):
    """The ledger is ahead of this image and the live schema lacks or changed what this image's
    own latest snapshot holds: a newer migration contracted the schema (or someone did by hand)."""

    exit_code = 6
    event = "schema_contracted"

    def __init__(self, latest: int, ahead: Sequence[str], lines: Sequence[str], *, command: str) -> None:
        self.lines = tuple(lines)
        super().__init__(
            f"drift: the database was migrated past this image ({', '.join(ahead)} applied; this image ships "
            f"versions up to {latest}) and the live schema differs from what this image's migrations "
            f"1..{latest} create ({len(lines)} object(s)): {'; '.join(lines)}. A newer migration "
            f"({newer_migration(ahead)}) removed or changed them (a contract step): this image cannot run "
            f"on this schema, and `{command}` ran nothing. Roll forward to an image that ships "
            f"{ahead[-1]} instead of rolling back"
        )


class AppliedSchemaDrift(MigratorError):
    """`up` applied and recorded files, and the catalog then lacks what their snapshot promises."""

    exit_code = 6
    event = "applied_schema_drift"

    def __init__(self, version: int, applied: Sequence[str], lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__(
            f"drift after applying: {', '.join(applied) or 'nothing'} applied and recorded, but the live "
            f"schema differs from what migrations 1..{version} create ({len(lines)} object(s)): "
            f"{'; '.join(lines)}. Either a file does not create what its snapshot says (run `make schema` "
            "after changing a migration) or the schema changed meanwhile; fix it with a new migration or "
            "by hand, then run `kata-migrate verify`"
        )


class BaselineRefused(MigratorError):
    """`baseline` on a database without tables would record a schema that is not there."""

    exit_code = 6
    event = "baseline_refused"

    def __init__(self, version: int) -> None:
        super().__init__(
            f"baseline {version} refused: this database has no tables, so no schema made by another tool "
            "is here to record; nothing was recorded. Run `kata-migrate up` to create the schema"
        )


class BaselineUnsatisfied(MigratorError):
    """`baseline N` on a schema that lacks what 1..N create: recording it would be a lie."""

    exit_code = 6
    event = "baseline_refused"

    def __init__(self, version: int, lines: Sequence[str], satisfied: int) -> None:
        self.lines = tuple(lines)
        advice = (
            f"it does satisfy version {satisfied}: run `kata-migrate baseline {satisfied}`, then `up`"
            if satisfied
            else "it satisfies no version: bring it up to the application's current schema first"
        )
        super().__init__(
            f"baseline {version} refused, nothing was recorded: the live schema lacks what migrations "
            f"1..{version} create ({len(lines)} object(s)): {'; '.join(lines)}; {advice}"
        )


class UnrecordedSchema(MigratorError):
    """`up` on application tables with no ledger: applying 0001 would fail on them, or worse."""

    exit_code = 6
    event = "unrecorded_schema"

    def __init__(
        self, tables: Sequence[str], drizzle: str | None, advice: str, lacking: Sequence[str] = ()
    ) -> None:
        # `advice` is the one `status` gives too (conformance.Unrecorded.advice).
        found = f"; {drizzle}" if drizzle else ""
        lacks = f"; it lacks: {'; '.join(lacking)}" if lacking else ""
        super().__init__(
            f"tables {', '.join(tables)} exist but no migration is recorded (another tool made them"
            f"{found}); nothing was run: {advice}{lacks}"
        )


class RepairRefused(MigratorError):
    """`repair` will not start: restoring the drift would invent data, a name it needs is taken, or
    the database is ahead of this image (what it would restore, a newer migration may have removed)."""

    exit_code = 6
    event = "repair_refused"

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__(f"repair refused, nothing was run: {'; '.join(reasons)}")

    @classmethod
    def drift(cls, version: int, breaking: Sequence[str], conflicts: Sequence[str]) -> RepairRefused:
        reasons = list(conflicts)
        if breaking:
            reasons.insert(
                0,
                f"the live schema lacks or changed what migrations 1..{version} create in a way repair does "
                f"not restore ({len(breaking)} object(s)): {'; '.join(breaking)}. Repair restores indexes "
                "and constraints only, never a table, column, type, enum label or extension: that would "
                "invent data. Restore those by hand (the named migration file holds the statement) or from "
                "a backup, then run `kata-migrate repair`",
            )
        return cls(reasons)

    @classmethod
    def ledger_ahead(cls, ahead: Sequence[str], latest: int) -> RepairRefused:
        return cls(
            [
                f"the database was migrated past this image ({', '.join(ahead)} applied; this image ships "
                f"versions up to {latest}), and what this image would restore a newer migration may have "
                f"removed on purpose. Run `kata-migrate repair` from an image that ships {ahead[-1]}"
            ]
        )


class RepairIncomplete(MigratorError):
    """`repair` ran its statements, yet the catalog read afterwards still differs."""

    exit_code = 6
    event = "repair_incomplete"

    def __init__(self, version: int, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__(
            f"repair ran, but the live schema still differs from what migrations 1..{version} create "
            f"({len(lines)} object(s)): {'; '.join(lines)}. Another session changed it meanwhile, or a "
            "name is held by an object repair does not see (a sequence or view): check `kata-migrate "
            "status`, then run `kata-migrate repair` again"
        )
