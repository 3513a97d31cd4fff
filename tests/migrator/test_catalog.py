"""Reading migration files and splitting statements: pure functions, no database."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localpg.install import service_user
from schema.catalog import VERSION_MAX, CatalogError, checksum, parse_file_name, parse_migration, read_catalog
from schema.splitter import LineIndex, split_statements
from tests.migrator.conftest import MIGRATIONS

slugs = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(version=st.integers(min_value=1, max_value=VERSION_MAX), slug=slugs, width=st.integers(1, 6))
def test_file_names_round_trip_to_version_and_slug(version: int, slug: str, width: int) -> None:
    assert parse_file_name(f"{version:0{width}d}_{slug}.sql") == (version, slug)


@given(version=st.integers(min_value=VERSION_MAX + 1, max_value=10**40))
def test_a_version_the_ledgers_bigint_cannot_hold_is_refused_naming_the_file_and_the_range(
    version: int,
) -> None:
    name = f"{version}_x.sql"
    with pytest.raises(
        CatalogError, match=re.escape(f"{name!r}: the version must be from 1 to {VERSION_MAX}")
    ):
        parse_file_name(name)


@given(name=st.text(max_size=30))
def test_file_names_either_parse_or_raise_catalog_error(name: str) -> None:
    try:
        version, slug = parse_file_name(name)
    except CatalogError as exc:
        assert "malformed" in str(exc) or f"from 1 to {VERSION_MAX}" in str(exc)
    else:
        assert name == f"{name.split('_', 1)[0]}_{slug}.sql" and version > 0


@pytest.mark.parametrize(
    "name", ["1.sql", "abc_x.sql", "0001-x.sql", "0001_x.SQL", "0001_.sql", "0000_zero.sql"]
)
def test_malformed_file_names_are_refused(name: str) -> None:
    with pytest.raises(CatalogError):
        parse_file_name(name)


def test_crlf_and_lf_files_have_the_same_checksum() -> None:
    lf = "CREATE TABLE a (id int);\nSELECT 1;\n"
    assert checksum(lf) == checksum(lf.replace("\n", "\r\n")) == checksum(lf.replace("\n", "\r"))
    assert checksum(lf) != checksum(lf + " ")


def test_header_directives_are_the_leading_lines_in_any_order() -> None:
    assert not parse_migration("0001_a.sql", b"-- migrate: no-transaction\r\nSELECT 1;").transactional
    both = parse_migration("0001_a.sql", b"\n-- MIGRATE: Contract\n-- migrate: no-transaction\nSELECT 1;")
    assert (both.transactional, both.contract) == (False, True)
    plain = parse_migration("0001_a.sql", b"-- a comment\nSELECT 1; -- migrate: contract\n")
    assert (plain.transactional, plain.contract) == (True, False)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # Once ignored: the file then ran in a transaction and failed on CONCURRENTLY.
        (
            "SELECT 1;\n-- migrate: no-transaction\n",
            "'0001_a.sql' line 2: `-- migrate: no-transaction` comes after the file's first comment",
        ),
        (
            "-- Build the index.\r\n-- migrate: contract\r\nSELECT 1;",
            "'0001_a.sql' line 2: `-- migrate: contract` comes after",
        ),
        (
            "-- migrate: no-transaction\n-- migrate: contrakt\nSELECT 1;",
            "'0001_a.sql' line 2: `-- migrate: contrakt` is not a known directive; the known ones are "
            "`-- migrate: no-transaction` and `-- migrate: contract`",
        ),
        ("-- migrate: no transaction\nSELECT 1;", "line 1: `-- migrate: no transaction` is not a known"),
    ],
)
def test_a_misplaced_or_unknown_directive_is_a_catalog_error_naming_file_and_line(
    text: str, problem: str
) -> None:
    with pytest.raises(CatalogError, match=re.escape(problem)):
        parse_migration("0001_a.sql", text.encode())


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"0001_a.sql": "SELECT 1;", "1_b.sql": "SELECT 2;"}, "share version 1"),
        ({"01_x.txt.sql": "SELECT 1;"}, "malformed"),
        ({"0001_a.sql": b"SELECT '\xff';"}, "not valid UTF-8"),
        ({"0001_a.sql": "  \n\n"}, "is empty"),
    ],
)
def test_unusable_files_are_catalog_errors(
    write_migrations: Callable[[dict[str, str | bytes]], Path], files: dict[str, str | bytes], problem: str
) -> None:
    with pytest.raises(CatalogError, match=problem):
        read_catalog(write_migrations(files))


def test_missing_directory_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope")


def test_catalog_orders_numerically_and_ignores_other_files(
    write_migrations: Callable[[dict[str, str | bytes]], Path],
) -> None:
    directory = write_migrations(
        {"10_b.sql": "SELECT 10;", "9_a.sql": "SELECT 9;", "README.md": "hi", "__init__.py": ""}
    )
    assert [m.version for m in read_catalog(directory).migrations] == [9, 10]


def test_packaged_migrations_are_six_in_order_and_only_the_initial_schema_is_transactional() -> None:
    catalog = read_catalog(MIGRATIONS)
    assert [m.version for m in catalog.migrations] == [1, 2, 3, 4, 5, 6]
    # 0002-0006 change filled tables: concurrent builds and NOT VALID + VALIDATE, each its own commit.
    assert [m.transactional for m in catalog.migrations] == [True, False, False, False, False, False]


def test_split_statements_understands_quotes_comments_and_dollar_quotes() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE \"we;ird\" (v text DEFAULT 'a;''b');\n"
        "/* block; /* nested; */ still; */ SELECT E'x\\';y';\n"
        "DO $body$ BEGIN PERFORM 1; END $body$;\n"
        "SELECT $$;$$, a$b FROM t;;\n"
        "SELECT 'last'"
    )
    statements = split_statements(sql)
    assert [s.text for s in statements] == [
        "CREATE TABLE \"we;ird\" (v text DEFAULT 'a;''b')",
        "SELECT E'x\\';y'",
        "DO $body$ BEGIN PERFORM 1; END $body$",
        "SELECT $$;$$, a$b FROM t",
        "SELECT 'last'",
    ]
    assert all(sql[s.offset :].startswith(s.text) for s in statements)


@given(parts=st.lists(st.from_regex(r"SELECT [a-z0-9 ,]{0,10}", fullmatch=True), min_size=1, max_size=8))
def test_split_statements_recovers_simple_statements(parts: list[str]) -> None:
    sql = ";\n".join(parts) + ";"
    assert [s.text for s in split_statements(sql)] == [p.rstrip() for p in parts]


def test_line_column_counts_like_an_editor() -> None:
    text = "ab\ncde\r\nf"
    assert LineIndex.of(text).line_column(0) == (1, 1)
    assert LineIndex.of(text).line_column(4) == (2, 2)
    assert LineIndex.of(text).line_column(text.index("f")) == (3, 1)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"0001_a.sql": "SELECT 1;", "0002_b.SQL": "SELECT 2;"}, "'0002_b.SQL' is malformed"),
        ({"0001_a.sql": "SELECT 1;", "0002_b.sql.bak": "SELECT 2;"}, "every file whose name contains '.sql'"),
        ({"0001_a.sql": "-- only a comment\n/* and another */\n"}, "has no SQL statement"),
        ({"0001_a.sql": ";;;\n ; \n"}, "has no SQL statement"),
        ({"README.md": "not a migration", "__init__.py": ""}, "has no migration files"),
        ({}, "has no migration files"),
    ],
)
def test_files_that_would_be_skipped_or_run_nothing_are_errors(
    write_migrations: Callable[[dict[str, str | bytes]], Path], files: dict[str, str | bytes], problem: str
) -> None:
    with pytest.raises(CatalogError, match=re.escape(problem)):
        read_catalog(write_migrations(files))


@pytest.mark.parametrize(
    "marker", ["-- Migrate: No-Transaction", "--MIGRATE: NO-TRANSACTION", "--  migrate:no-transaction"]
)
def test_the_no_transaction_marker_is_case_insensitive(marker: str) -> None:
    migration = parse_migration("0001_a.sql", f"{marker}\nCREATE INDEX CONCURRENTLY i ON t (x);".encode())
    assert not migration.transactional


def make_special(directory: Path, kind: str) -> Path:
    """A `0002_x.sql` entry that is not a readable regular file."""
    path = directory / "0002_x.sql"
    if kind == "broken symlink":
        path.symlink_to(directory / "gone.sql")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("broken symlink", "No such file or directory (a symbolic link to nothing)"),
        ("directory", "it is a directory, not a regular file"),
        ("fifo", "it is a FIFO (named pipe), not a regular file"),
    ],
)
def test_entries_that_are_not_readable_regular_files_name_the_file_and_the_os_error(
    write_migrations: Callable[[dict[str, str | bytes]], Path], kind: str, problem: str
) -> None:
    directory = write_migrations({"0001_a.sql": "SELECT 1;"})
    path = make_special(directory, kind)
    with pytest.raises(
        CatalogError, match=re.escape(f"migration file {str(path)!r} cannot be read: {problem}")
    ):
        read_catalog(directory)


def catalog_error_without_privileges(directory: Path) -> str:
    """read_catalog's error as an unprivileged user: root reads a chmod 000 file anyway, so a
    forked child drops to the suite's system user (kata-pg) first; no other process is involved."""
    user = service_user()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, read, report, exit without running pytest's teardown
        message = "no error"
        try:
            os.close(read_end)
            if user is not None:
                entry = pwd.getpwnam(user)
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            read_catalog(directory)
        except CatalogError as exc:
            message = str(exc)
        except BaseException as exc:  # reported to the parent, which fails the test
            message = f"unexpected {type(exc).__name__}"
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.mark.parametrize("target", ["file", "folder"])
def test_an_unreadable_file_or_folder_names_it_and_the_os_error(target: str) -> None:
    parent = Path(tempfile.mkdtemp(prefix="kata-catalog-"))  # reachable by the system user
    directory = parent / "migrations"
    try:
        parent.chmod(0o755)
        directory.mkdir(mode=0o755)
        (directory / "0001_a.sql").write_text("SELECT 1;")
        (directory / "0001_a.sql").chmod(0o644)
        (directory / "0001_a.sql" if target == "file" else directory).chmod(0)
        message = catalog_error_without_privileges(directory)
        if target == "file":
            expected = f"migration file {str(directory / '0001_a.sql')!r} cannot be read: Permission denied"
        else:
            expected = f"migrations directory {str(directory)!r} cannot be read (Permission denied)"
        assert message.startswith(expected), message
    finally:
        directory.chmod(0o755)
        shutil.rmtree(parent)
