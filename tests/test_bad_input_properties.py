"""Invariants over generated operator input, through the real entry points in-process:

- any DATABASE_URL (or DATABASE_URL_UNPOOLED, or the probe's): no piece of its password of 3 or
  more characters appears in any output, and the migrator's exit code is documented and not 1;
- any values of the settings: exit 2 naming a setting, or a clean start;
- any text in an event (a server notice, a ledger row, POD_NAME) and in `status`: each event is
  exactly one line with no raw control character, and JSON reads back what was logged.

Bounded: a few dozen examples each, no deadline (the machine is shared), nothing slow per example
(port 1 on loopback refuses at once; a pooler host stops `up` with exit 9 before any network)."""

from __future__ import annotations

import io
import itertools
import json
import re
from datetime import UTC, datetime
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.errors import EXIT_CODES
from migrator.events import EventLog
from migrator.status import status_text
from pgconn.config import SECONDS_MAX, SettingsError
from probe.settings import OPTIONS as PROBE_OPTIONS
from probe.settings import ProbeSettings
from schema.catalog import Catalog, parse_migration
from schema.ledger import AppliedMigration
from schema.verdicts import state_of
from tests.migrator.conftest import MIGRATIONS, run_inprocess

DOCUMENTED = {int(code) for key in EXIT_CODES for code in key.split(" / ")} - {1}
BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Letters that no message, key or event name contains, beside every character a URL reserves:
# a leaked piece shows as a letter from here, while "://" or "%40" can appear in any message.
SECRET_LETTERS = "QZXJKWVÿ€"
passwords = st.text(alphabet=SECRET_LETTERS + "/#@:?&=%+ ", min_size=1, max_size=16)
hosts = st.sampled_from(["127.0.0.1", "[::1]", "127.0.0.1:1", "[::1]:1", "127.0.0.1:x", ""])
tails = st.sampled_from(["/db", "/db?sslmode=disable", "", "/", "/db?application_name=a", "?x"])


def pieces(password: str) -> set[str]:
    """Every substring of 3 or more characters (as written and percent-decoded) that holds one of
    the secret letters."""
    found: set[str] = set()
    for text in {password, unquote(password)}:
        for i, j in itertools.combinations(range(len(text) + 1), 2):
            piece = text[i:j]
            if len(piece) >= 3 and any(c in SECRET_LETTERS for c in piece):
                found.add(piece)
    return found


def url_from(password: str, host: str, tail: str, user: str) -> str:
    return f"postgresql://{user}:{password}@{host}{tail}"


@BOUNDED
@given(password=passwords, host=hosts, tail=tails, user=st.sampled_from(["app", "a", "u%40x"]))
def test_no_piece_of_any_password_appears_and_the_exit_code_is_documented(
    password: str, host: str, tail: str, user: str
) -> None:
    url = url_from(password, host, tail, user)
    for env in (
        {"DATABASE_URL": url},
        {"DATABASE_URL": "postgresql://app@127.0.0.1:1/db", "DATABASE_URL_UNPOOLED": url},
    ):
        outcome = run_inprocess(
            ["status"], {**env, "MIGRATOR_CONNECT_TIMEOUT": "0", "MIGRATIONS_DIR": str(MIGRATIONS)}
        )
        output = outcome.stdout + outcome.stderr
        assert outcome.code in DOCUMENTED, output
        assert "Traceback" not in output
        leaked = [piece for piece in pieces(password) if piece in output]
        assert not leaked, (leaked, output)


@BOUNDED
@given(password=passwords, host=hosts, tail=tails)
def test_the_probe_settings_never_show_a_piece_of_the_password(password: str, host: str, tail: str) -> None:
    url = url_from(password, host, tail, "app")
    try:
        loaded = ProbeSettings.load([], {"DATABASE_URL": url})
    except SettingsError as exc:
        shown = str(exc)
    else:
        shown = f"{loaded!r} {loaded.database.url.redacted()}"
    assert not [piece for piece in pieces(password) if piece in shown], shown


values = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{0,8}(\.[0-9]{0,6})?(e[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(
        ["nan", "inf", "-inf", "1e10", "0.0001", "²", "٨٠٨١", "0", "2147483", "2147484", "0.001"]
    ),
)
MIGRATOR_SETTINGS = (
    "MIGRATOR_LOCK_TIMEOUT",
    "MIGRATOR_CONNECT_TIMEOUT",
    "MIGRATOR_STATEMENT_TIMEOUT",
    "MIGRATOR_DDL_LOCK_TIMEOUT",
    "MIGRATOR_CONCURRENT_WAIT_TIMEOUT",
    "MIGRATOR_LOCK_RETRY_BUDGET",
    "MIGRATOR_WAIT_TIMEOUT",
)


@BOUNDED
@given(chosen=st.dictionaries(st.sampled_from(MIGRATOR_SETTINGS), values, min_size=1))
def test_any_migrator_settings_exit_2_naming_one_or_start_cleanly(chosen: dict[str, str]) -> None:
    # A pooler host: `up` stops with exit 9 right after a clean start, before any network call.
    env = {"DATABASE_URL": "postgresql://app:pw@ep-x-pooler.invalid/db", **chosen}
    env["DATABASE_POOLED"] = (
        "auto" if chosen.get("DATABASE_POOLED", "auto").strip() == "" else env.get("DATABASE_POOLED", "auto")
    )
    outcome = run_inprocess(["up"], {**env, "MIGRATIONS_DIR": str(MIGRATIONS)})
    assert outcome.code in (2, 9), outcome.stderr
    if outcome.code == 2:
        assert any(name in outcome.final_message for name in chosen), outcome.final_message
    else:
        assert outcome.names() == ["start", "pooler_refused"], outcome.stderr


@BOUNDED
@given(chosen=st.dictionaries(st.sampled_from([o.env for o in PROBE_OPTIONS[4:]]), values, min_size=1))
def test_any_probe_settings_are_a_setting_error_naming_one_or_in_range(chosen: dict[str, str]) -> None:
    try:
        loaded = ProbeSettings.load([], {"DATABASE_URL": "postgresql://app@127.0.0.1:1/db", **chosen})
    except SettingsError as exc:
        assert any(name in str(exc) for name in chosen), str(exc)
        return
    assert 0 < loaded.port < 65536
    assert 0.05 <= loaded.interval <= SECONDS_MAX and 0.01 <= loaded.timeout <= loaded.interval
    assert 0 <= loaded.shutdown_delay <= SECONDS_MAX and 1 <= loaded.idle_timeout <= SECONDS_MAX


# Any character at all, with the ones that matter made common: controls, the Unicode line and
# paragraph separators, bidirectional overrides, and lone surrogates (undecodable environment bytes).
# (A list joined, not st.text: that leaves surrogates out.)
anything = st.lists(
    st.one_of(
        st.characters(blacklist_categories=()),
        st.characters(max_codepoint=0x9F, blacklist_categories=()),
        st.characters(min_codepoint=0x2028, max_codepoint=0x2069, blacklist_categories=()),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, blacklist_categories=()),
    ),
    max_size=40,
).map("".join)
# What a reader must never get raw, written here rather than imported from the code under test.
RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
TEXT_EVENT = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+Z (INFO|WARNING|ERROR) [a-z_]+( .*)?")


def one_clean_line(written: str) -> str:
    assert written.endswith("\n") and written.count("\n") == 1, repr(written)
    line = written[:-1]
    assert not RAW_CONTROL.search(line), repr(line)
    return line


@BOUNDED
@given(message=anything, value=anything, fmt=st.sampled_from(["json", "text"]))
def test_any_text_in_an_event_is_one_line_without_a_raw_control_character(
    message: str, value: str, fmt: str
) -> None:
    stream = io.StringIO()
    EventLog(stream, fmt=fmt).warning("server_notice", message, detail=value, severity="NOTICE")
    line = one_clean_line(stream.getvalue())
    if fmt == "json":
        event = json.loads(line)
        # As JSON reads any string back (two lone surrogates that form a pair become one character).
        assert [event.get("msg", ""), event["detail"]] == json.loads(json.dumps([message, value]))
    else:
        assert TEXT_EVENT.fullmatch(line), line


@BOUNDED
@given(pod=anything.filter(lambda text: "\x00" not in text), fmt=st.sampled_from(["json", "text"]))
def test_any_pod_name_leaves_every_log_line_one_clean_line(pod: str, fmt: str) -> None:
    env = {"DATABASE_URL": "postgresql://app:pw@ep-x-pooler.invalid/db", "POD_NAME": pod}
    outcome = run_inprocess(["up", "--log-format", fmt], {**env, "MIGRATIONS_DIR": str(MIGRATIONS)})
    assert outcome.code == 9, outcome.stderr  # a clean start, then the pooler refusal before any network
    lines = [one_clean_line(line + "\n") for line in outcome.stderr.split("\n")[:-1]]
    assert len(lines) == 2, outcome.stderr
    if fmt == "text":
        assert all(TEXT_EVENT.fullmatch(line) for line in lines), lines


@BOUNDED
@given(name=anything, applied_by=anything, file=anything)
def test_any_ledger_text_leaves_status_one_clean_line_per_version(
    name: str, applied_by: str, file: str
) -> None:
    catalog = Catalog((parse_migration("0001_a.sql", b"SELECT 1;"),))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    rows = (AppliedMigration(7, name, "x", when, 1.0, applied_by, "applied", file or None),)
    text = status_text(catalog, state_of(catalog, rows))
    lines = [one_clean_line(line + "\n") for line in text.split("\n")[:-1]]
    assert len(lines) == 3, lines  # the header, version 1 (pending) and version 7 (missing here)
