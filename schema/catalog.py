"""The migration files of this image: names, versions, checksums, where they live; no database."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final

FILE_NAME: Final = re.compile(r"(?P<version>[0-9]+)_(?P<slug>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql")
NO_TRANSACTION: Final = re.compile(r"--\s*migrate:\s*no-transaction\s*")


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


@dataclass(frozen=True)
class Catalog:
    """The migrations of this image, in version order."""

    migrations: tuple[Migration, ...]

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
            f"migration file name {filename!r} is malformed: use NNNN_slug.sql "
            "(digits, underscore, letters/digits/_/-, .sql), e.g. 0005_add_index.sql"
        )
    version = int(match["version"])
    if version <= 0:
        raise CatalogError(f"migration file {filename!r}: the version must be greater than 0")
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
    first_line = text.lstrip("\n\r").splitlines()[0]
    return Migration(
        version=version,
        name=slug,
        filename=filename,
        checksum=checksum(text),
        transactional=NO_TRANSACTION.fullmatch(first_line.strip()) is None,
        sql=text,
    )


def read_catalog(directory: Path | None = None) -> Catalog:
    """Every `*.sql` file in `directory` (default: the packaged ones), parsed and ordered; other
    files are ignored."""
    directory = directory if directory is not None else packaged_migrations_dir()
    if not directory.is_dir():
        raise CatalogError(
            f"migrations directory {str(directory)!r} does not exist or is not a directory: "
            "set MIGRATIONS_DIR or --migrations to the folder holding NNNN_slug.sql files"
        )
    migrations = [
        parse_migration(path.name, path.read_bytes())
        for path in sorted(directory.iterdir())
        if path.suffix == ".sql" and not path.name.startswith(".")
    ]
    catalog = Catalog(tuple(sorted(migrations, key=lambda m: m.version)))
    check_unique_versions(catalog)
    return catalog


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
