"""Names in SQL text: an identifier quoted as PostgreSQL's quote_ident quotes it, and whether a
deparsed index key is a plain column."""

from __future__ import annotations

import re
from typing import Final

# Lower-case ASCII letters, digits and `_`, not starting with a digit: what PostgreSQL's
# quote_ident leaves bare (it quotes `$` and any non-ASCII letter, though both are legal bare).
PLAIN: Final = re.compile(r"[a-z_][a-z0-9_]*")
QUOTED: Final = re.compile(r'"(?:[^"]|"")+"')

# Every keyword PostgreSQL 18 does not accept as a bare name (pg_get_keywords() where catcode is
# not 'U'); PostgreSQL 16's are a subset. Quoting one more word than needed is harmless, one less
# is a syntax error: tests/schema/test_restore.py checks this against the servers' own quote_ident.
KEYWORDS: Final = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean
    both case cast char character check coalesce collate collation column concurrently constraint create
    cross current_catalog current_date current_role current_schema current_time current_timestamp
    current_user dec decimal default deferrable desc distinct do else end except exists extract false
    fetch float for foreign freeze from full grant greatest group grouping having ilike in initially
    inner inout int integer intersect interval into is isnull join json json_array json_arrayagg
    json_exists json_object json_objectagg json_query json_scalar json_serialize json_table json_value
    lateral leading least left like limit localtime localtimestamp merge_action national natural nchar
    none normalize not notnull null nullif numeric offset on only or order out outer overlaps overlay
    placing position precision primary real references returning right row select session_user setof
    similar smallint some substring symmetric system_user table tablesample then time timestamp to
    trailing treat trim true union unique user using values varchar variadic verbose when where window
    with xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
    xmlserialize xmltable
    """.split()  # noqa: SIM905 - a list of words reads better as text than as 164 quoted strings
)


def quote_ident(name: str) -> str:
    """`name` as SQL: bare when PostgreSQL reads it back unchanged, else in double quotes."""
    if PLAIN.fullmatch(name) and name not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def is_column(key: str) -> bool:
    """Whether an index key as pg_get_indexdef prints it names a column (bare or quoted) rather
    than an expression, which CREATE INDEX needs in parentheses."""
    return bool(QUOTED.fullmatch(key) or (PLAIN.fullmatch(key) and key not in KEYWORDS))
