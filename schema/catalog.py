"""The migration files of this image: names, versions, checksums, where they live; no database."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Final

from pgconn.files import read_regular_file
from schema.splitter import LINE_BREAK, LineIndex, Statement, iter_statements, split_statements

FILE_NAME: Final = re.compile(r"(?P<version>[0-9]+)_(?P<slug>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql")
# A header directive: `-- migrate: <word>`, one per line, before anything but blank lines.
# Case-insensitive: `-- Migrate: No-Transaction` means the same, and running such a file in a
# transaction would fail on its first CONCURRENTLY (25001) for a reason its author cannot see.
DIRECTIVE: Final = re.compile(r"\s*--\s*migrate:\s*(?P<word>.*?)\s*", re.IGNORECASE)
NO_TRANSACTION: Final = "no-transaction"
# The file removes or changes what an earlier version's snapshot holds (docs/migrator.md).
CONTRACT: Final = "contract"
DIRECTIVES: Final = (NO_TRANSACTION, CONTRACT)
# The ledger's version column is a bigint: a larger number could never be recorded.
VERSION_MAX: Final = 2**63 - 1
FILE_RULE: Final = "NNNN_slug.sql (digits, underscore, letters/digits/_/-, lower-case .sql)"


class CatalogError(ValueError):
    """The migrations directory or one of its files cannot be used (exit 2, before connecting)."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version (the integer prefix), name, text and checksum."""

    version: int
    name: str
    filename: str
    checksum: str
    transactional: bool
    sql: str = field(repr=False)
    # `-- migrate: contract`: removes or changes what an older image's schema needs.
    contract: bool = False

    # Built at first use and kept: the rules and the runner read the same split, and every message
    # finds its line in the same index, so a file costs one pass of each whatever its size.
    @cached_property
    def statements(self) -> tuple[Statement, ...]:
        return split_statements(self.sql)

    @cached_property
    def lines(self) -> LineIndex:
        return LineIndex.of(self.sql)


@dataclass(frozen=True)
class Catalog:
    """The migrations of this image, in version order."""

    migrations: tuple[Migration, ...]
    # Where the files were read from: their snapshots/ sit beside them.
    directory: Path | None = field(default=None, compare=False)

    @property
    def latest_version(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}


def checksum(text: str) -> str:
    """SHA-256 of the text with CRLF and CR normalised to LF, so a Windows checkout matches."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def parse_file_name(filename: str) -> tuple[int, str]:
    """`0003_add_index.sql` -> (3, "add_index"); CatalogError for anything else."""
    match = FILE_NAME.fullmatch(filename)
    if not match:
        raise CatalogError(
            f"migration file name {filename!r} is malformed: every file whose name contains '.sql' must be "
            f"{FILE_RULE}, e.g. 0005_add_index.sql; rename it, or move it out of the folder"
        )
    version = int(match["version"])
    if not 0 < version <= VERSION_MAX:
        raise CatalogError(
            f"migration file {filename!r}: the version must be from 1 to {VERSION_MAX} (the ledger "
            "records it as a bigint); renumber the file"
        )
    return version, match["slug"]


def parse_migration(filename: str, raw: bytes) -> Migration:
    """Build a Migration from a file's name and bytes; CatalogError when unusable."""
    version, slug = parse_file_name(filename)
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"migration file {filename!r} is not valid UTF-8 (byte {exc.start}): re-save it as UTF-8"
        ) from None
    if not text.strip():
        raise CatalogError(f"migration file {filename!r} is empty: add its SQL or delete the file")
    if next(iter_statements(text), None) is None:
        raise CatalogError(
            f"migration file {filename!r} has no SQL statement (only comments, blank lines or ';'): "
            "add its SQL or delete the file"
        )
    directives = parse_directives(filename, text)
    return Migration(
        version=version,
        name=slug,
        filename=filename,
        checksum=checksum(text),
        transactional=NO_TRANSACTION not in directives,
        sql=text,
        contract=CONTRACT in directives,
    )


def parse_directives(filename: str, text: str) -> frozenset[str]:
    """The words of the file's leading `-- migrate: <word>` lines. A directive anywhere else, or a
    word nobody knows, is a CatalogError naming the line: a misplaced or misspelt
    `no-transaction` would otherwise run the file in a transaction, and a misspelt `contract`
    would pass the CI rule it exists for."""
    words: set[str] = set()
    in_header = True
    for number, line in enumerate(LINE_BREAK.split(text), start=1):
        match = DIRECTIVE.fullmatch(line)
        if match is None:
            in_header = in_header and not line.strip()
            continue
        where = f"migration file {filename!r} line {number}: `{line.strip()}`"
        if not in_header:
            raise CatalogError(
                f"{where} comes after the file's first comment or statement; `-- migrate:` directives "
                "must be the file's first lines (only blank lines before them): move it to the top"
            )
        if match["word"].lower() not in DIRECTIVES:
            known = " and ".join(f"`-- migrate: {word}`" for word in DIRECTIVES)
            raise CatalogError(f"{where} is not a known directive; the known ones are {known}")
        words.add(match["word"].lower())
    return frozenset(words)


def read_catalog(directory: Path | None = None) -> Catalog:
    """Every migration file in `directory` (default: the packaged ones), parsed and ordered.

    Files without '.sql' in their name (README, __init__.py, snapshots) are not migrations; any
    other must be a well-named, regular, readable, non-empty file, and there must be at least one:
    an image whose migrations are missing must not report "up to date"."""
    directory = directory if directory is not None else packaged_migrations_dir()
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
        problem = "does not exist or is not a directory" if missing else f"cannot be read ({exc.strerror})"
        raise CatalogError(
            f"migrations directory {str(directory)!r} {problem}: set MIGRATIONS_DIR "
            "or --migrations to a readable folder holding NNNN_slug.sql files"
        ) from None
    migrations = [read_migration(directory / name) for name in names if is_migration_name(name)]
    if not migrations:
        raise CatalogError(
            f"migrations directory {str(directory)!r} has no migration files ({FILE_RULE}): "
            "an image without its migrations cannot say whether the schema is current"
        )
    catalog = Catalog(tuple(sorted(migrations, key=lambda m: m.version)), directory)
    check_unique_versions(catalog)
    return catalog


def is_migration_name(name: str) -> bool:
    """Hidden files aside, anything named like SQL (`0002_b.SQL`, `3_x.sql.bak`) is meant as a
    migration: it must then match the pattern rather than be skipped in silence."""
    return not name.startswith(".") and ".sql" in name.lower()


def read_migration(path: Path) -> Migration:
    """Parse the name first (no I/O), then read the file; any OS error names the file."""
    parse_file_name(path.name)
    try:
        raw = read_regular_file(path)
    except OSError as exc:
        hint = " (a symbolic link to nothing)" if path.is_symlink() and not path.exists() else ""
        raise CatalogError(
            f"migration file {str(path)!r} cannot be read: {exc.strerror}{hint}; "
            "fix the file or its permissions (it must be a regular file the program can read)"
        ) from None
    return parse_migration(path.name, raw)


def check_unique_versions(catalog: Catalog) -> None:
    """`0003_a.sql` and `3_b.sql` both claim version 3: refuse rather than pick one."""
    seen: dict[int, str] = {}
    for migration in catalog.migrations:
        if migration.version in seen:
            raise CatalogError(
                f"migration files {seen[migration.version]!r} and {migration.filename!r} share version "
                f"{migration.version}: renumber one of them"
            )
        seen[migration.version] = migration.filename


def packaged_migrations_dir() -> Path:
    """The SQL files shipped inside the installed distribution (package `kata_migrations`)."""
    try:
        return Path(str(resources.files("kata_migrations")))
    except ModuleNotFoundError:
        # Running from a checkout that was not installed: migrations/ beside the packages.
        return Path(__file__).resolve().parent.parent / "migrations"
