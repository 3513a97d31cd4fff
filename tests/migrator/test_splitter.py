"""The statement splitter against the SQL psql's scanner accepts: bodies, rules, newlines."""

from __future__ import annotations

from schema.splitter import LineIndex, split_statements

ATOMIC_BODY = (
    "CREATE FUNCTION sign_of(x int) RETURNS text LANGUAGE sql\n"
    "BEGIN ATOMIC\n"
    "  SELECT CASE WHEN x > 0 THEN 'plus' WHEN x < 0 THEN 'minus' ELSE 'zero' END;\n"
    "END"
)
RULE = (
    "CREATE RULE audit AS ON INSERT TO t DO ALSO (\n"
    "  INSERT INTO log VALUES ('a');\n"
    "  INSERT INTO log VALUES ('b')\n"
    ")"
)


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_begin_atomic_body_with_nested_case_is_one_statement() -> None:
    assert texts(f"{ATOMIC_BODY};\nSELECT sign_of(1);") == [ATOMIC_BODY, "SELECT sign_of(1)"]


def test_create_or_replace_procedure_body_is_one_statement() -> None:
    body = "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END"
    assert texts(f"{body}; CREATE TABLE z(x int)") == [body, "CREATE TABLE z(x int)"]


def test_parenthesised_rule_actions_are_one_statement() -> None:
    assert texts(f"{RULE};\nSELECT 1;") == [RULE, "SELECT 1"]


def test_transaction_begin_outside_a_routine_is_its_own_statement() -> None:
    assert texts("BEGIN; CREATE TABLE a(x int); COMMIT;") == ["BEGIN", "CREATE TABLE a(x int)", "COMMIT"]


def test_a_line_comment_ends_at_a_bare_carriage_return_as_in_postgresql() -> None:
    assert texts("-- c\rCREATE TABLE t(x int);\r") == ["CREATE TABLE t(x int)"]


def test_escape_string_prefix_is_not_a_word() -> None:
    assert texts("SELECT E'begin\\';'; SELECT 2") == ["SELECT E'begin\\';'", "SELECT 2"]


def test_line_column_treats_cr_crlf_and_lf_each_as_one_line_break() -> None:
    text = "a\rb\r\nc\nd"
    assert LineIndex.of(text).line_column(text.index("b")) == (2, 1)
    assert LineIndex.of(text).line_column(text.index("c")) == (3, 1)
    assert LineIndex.of(text).line_column(text.index("d")) == (4, 1)
    assert LineIndex.of("ab\rcd").line_column(4) == (2, 2)


def test_an_unterminated_block_comment_is_sent_so_postgresql_rejects_it_rather_than_skipped() -> None:
    unterminated = "/* open /* nested */"
    assert texts(f"CREATE TABLE a(x int);\n{unterminated}") == ["CREATE TABLE a(x int)", unterminated]
    assert texts("SELECT 1; /* closed /* nested */ */") == ["SELECT 1"]


def test_an_unterminated_string_ending_in_a_doubled_quote_runs_to_the_end_of_the_file() -> None:
    # '' is a quote inside the string, not its end followed by a new one: nothing after it splits.
    assert texts("SELECT 'a'';\nSELECT E'b\\';\nSELECT 1;") == ["SELECT 'a'';\nSELECT E'b\\';\nSELECT 1;"]
    assert texts("SELECT E'a''\\';\nSELECT 1;") == ["SELECT E'a''\\';\nSELECT 1;"]
