"""Reading migration files and splitting statements: pure functions, no database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schema.catalog import CatalogError, checksum, parse_file_name, parse_migration, read_catalog
from schema.splitter import line_column, split_statements
from tests.migrator.conftest import MIGRATIONS

slugs = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(version=st.integers(min_value=1, max_value=10**9), slug=slugs, width=st.integers(1, 6))
def test_file_names_round_trip_to_version_and_slug(version: int, slug: str, width: int) -> None:
    assert parse_file_name(f"{version:0{width}d}_{slug}.sql") == (version, slug)


@given(name=st.text(max_size=30))
def test_file_names_either_parse_or_raise_catalog_error(name: str) -> None:
    try:
        version, slug = parse_file_name(name)
    except CatalogError as exc:
        assert "malformed" in str(exc) or "greater than 0" in str(exc)
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


def test_no_transaction_marker_must_be_the_first_line() -> None:
    assert not parse_migration("0001_a.sql", b"-- migrate: no-transaction\r\nSELECT 1;").transactional
    assert parse_migration("0001_a.sql", b"SELECT 1;\n-- migrate: no-transaction\n").transactional


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
    migrations_dir: Callable[[dict[str, str | bytes]], Path], files: dict[str, str | bytes], problem: str
) -> None:
    with pytest.raises(CatalogError, match=problem):
        read_catalog(migrations_dir(files))


def test_missing_directory_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope")


def test_catalog_orders_numerically_and_ignores_other_files(
    migrations_dir: Callable[[dict[str, str | bytes]], Path],
) -> None:
    directory = migrations_dir(
        {"10_b.sql": "SELECT 10;", "9_a.sql": "SELECT 9;", "README.md": "hi", "__init__.py": ""}
    )
    assert [m.version for m in read_catalog(directory).migrations] == [9, 10]


def test_packaged_migrations_are_five_in_order_and_only_the_initial_schema_is_transactional() -> None:
    catalog = read_catalog(MIGRATIONS)
    assert [m.version for m in catalog.migrations] == [1, 2, 3, 4, 5]
    # 0002-0005 change filled tables: concurrent builds and NOT VALID + VALIDATE, each its own commit.
    assert [m.transactional for m in catalog.migrations] == [True, False, False, False, False]


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
    assert line_column(text, 0) == (1, 1)
    assert line_column(text, 4) == (2, 2)
    assert line_column(text, text.index("f")) == (3, 1)
