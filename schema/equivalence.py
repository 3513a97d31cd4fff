"""One form for SQL expressions that PostgreSQL deparses differently although they mean the same:
the drift comparison reads column defaults, CHECK constraints and index predicates through it, so
`DEFAULT CURRENT_TIMESTAMP` is not reported against a snapshot's `now()`, nor `CHECK (0 <= x)`
against `CHECK (x >= 0)`. Only the comparison uses it; messages show what PostgreSQL printed.

Rewritten, outside string literals and quoted identifiers:

- `CURRENT_TIMESTAMP` and `transaction_timestamp()` to `now()`: PostgreSQL's `now` and
  `transaction_timestamp` are one C function (pg_proc.prosrc `now`), and CURRENT_TIMESTAMP without
  a precision returns the same transaction start time. `CURRENT_TIMESTAMP(p)` rounds, and
  `statement_timestamp()`/`clock_timestamp()` change within a transaction: they stay apart.
- `uuidv4()` (PostgreSQL 18) to `gen_random_uuid()`: one C function (prosrc `gen_random_uuid`).
- `USER` and `CURRENT_ROLE` to `CURRENT_USER`: the SQL standard's three names of one value
  (`SESSION_USER` differs after SET ROLE and stays apart).
- A comparison of a constant with a column, `(0 <= x)`, to the column first, `(x >= 0)`: the six
  comparison operators of every built-in type are declared each other's commutators
  (pg_operator.oprcom), so swapping the operands and the operator keeps the meaning.
"""

from __future__ import annotations

import re
from typing import Final

SAME_FUNCTION: Final = {
    "CURRENT_TIMESTAMP": "now()",
    "transaction_timestamp()": "now()",
    "uuidv4()": "gen_random_uuid()",
    "USER": "CURRENT_USER",
    "CURRENT_ROLE": "CURRENT_USER",
}
COMMUTED: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}

_NAME = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")*")'
_TYPE = r'(?:[a-z_][a-z0-9_ ]*?|"(?:[^"]|"")*")(?:\[\])?'
# A number, or a literal with its cast as PostgreSQL prints it: `'-1'::integer`, `'2.5'::numeric`.
_CONSTANT = rf"(?:-?[0-9]+(?:\.[0-9]+)?|'(?:[^']|'')*'::{_TYPE})"
# A column, or a column cast the way PostgreSQL prints it: `(x)::numeric`.
_COLUMN = rf"(?:\({_NAME}\)::{_TYPE}|{_NAME})"
# Alternatives tried left to right at each position: a literal or a quoted identifier is consumed
# whole, so nothing inside one is ever rewritten.
_TOKENS: Final = re.compile(
    rf"(?P<commuted>\((?P<constant>{_CONSTANT}) (?P<operator><>|<=|>=|<|>|=) (?P<column>{_COLUMN})\))"
    rf"|(?P<literal>'(?:[^']|'')*')"
    rf'|(?P<quoted>"(?:[^"]|"")*")'
    rf"|(?<![\w.])(?P<function>CURRENT_TIMESTAMP(?![\w(])|transaction_timestamp\(\)|uuidv4\(\)"
    rf"|USER(?!\w)|CURRENT_ROLE(?!\w))"
)


def canonical(expression: str) -> str:
    """The expression with equivalent spellings brought to one form (see the module docstring)."""
    return _TOKENS.sub(_rewrite, expression)


def _rewrite(match: re.Match[str]) -> str:
    if match["commuted"]:
        return f"({match['column']} {COMMUTED[match['operator']]} {match['constant']})"
    if match["function"]:
        return SAME_FUNCTION[match["function"]]
    return match[0]
