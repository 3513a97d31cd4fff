"""Equivalent spellings of one expression, as PostgreSQL deparses them, come to one form; spellings
that mean something else, and anything inside a literal, stay apart."""

from __future__ import annotations

import pytest

from schema.equivalence import canonical

SAME = [
    pytest.param("CURRENT_TIMESTAMP", "now()", id="current-timestamp"),
    pytest.param("transaction_timestamp()", "now()", id="transaction-timestamp"),
    pytest.param("(CURRENT_TIMESTAMP + '1 day'::interval)", "(now() + '1 day'::interval)", id="nested"),
    pytest.param("uuidv4()", "gen_random_uuid()", id="uuidv4"),
    pytest.param("USER", "CURRENT_USER", id="user"),
    pytest.param("CURRENT_ROLE", "CURRENT_USER", id="current-role"),
    pytest.param("CHECK ((0 <= total_tokens))", "CHECK ((total_tokens >= 0))", id="commuted-le"),
    pytest.param("CHECK ((0 < x))", "CHECK ((x > 0))", id="commuted-lt"),
    pytest.param("CHECK ((1 = x))", "CHECK ((x = 1))", id="commuted-eq"),
    pytest.param("CHECK ((1 <> x))", "CHECK ((x <> 1))", id="commuted-ne"),
    pytest.param("CHECK (('-1'::integer < a))", "CHECK ((a > '-1'::integer))", id="negative"),
    pytest.param(
        "CHECK (('-2.5'::numeric < (a)::numeric))", "CHECK (((a)::numeric > '-2.5'::numeric))", id="cast"
    ),
    pytest.param(
        "CHECK (((token_count IS NULL) OR (0 <= token_count)))",
        "CHECK (((token_count IS NULL) OR (token_count >= 0)))",
        id="inside-or",
    ),
    pytest.param('CHECK ((0 <= "Total"))', 'CHECK (("Total" >= 0))', id="quoted-column"),
    pytest.param(
        "CHECK (('a b'::character varying > x))", "CHECK ((x < 'a b'::character varying))", id="two-word-type"
    ),
]

APART = [
    pytest.param("CURRENT_TIMESTAMP(3)", id="rounded-timestamp"),
    pytest.param("statement_timestamp()", id="statement-timestamp"),
    pytest.param("clock_timestamp()", id="clock-timestamp"),
    pytest.param("SESSION_USER", id="session-user"),
    pytest.param("'CURRENT_TIMESTAMP'::text", id="in-a-literal"),
    pytest.param("CHECK ((x <> '(0 <= y)'::text))", id="comparison-in-a-literal"),
    pytest.param('CHECK (("CURRENT_ROLE" IS NOT NULL))', id="quoted-identifier"),
    pytest.param("CHECK ((a >= b))", id="two-columns"),
    pytest.param("CHECK ((0 <= now()))", id="constant-and-function"),
    pytest.param("CHECK ((x >= 0))", id="already-column-first"),
]


@pytest.mark.parametrize(("spelling", "form"), SAME)
def test_equivalent_spellings_come_to_one_form(spelling: str, form: str) -> None:
    assert canonical(spelling) == canonical(form) == form


@pytest.mark.parametrize("expression", APART)
def test_other_meanings_and_literals_are_left_as_they_are(expression: str) -> None:
    assert canonical(expression) == expression


def test_the_other_timestamps_stay_apart_from_now() -> None:
    assert len({canonical(e) for e in ("now()", "CURRENT_TIMESTAMP(3)", "statement_timestamp()")}) == 3
