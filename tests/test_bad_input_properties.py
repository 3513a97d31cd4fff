"""Invariants over generated operator input, through the real entry points in-process:

- any DATABASE_URL (or DATABASE_URL_UNPOOLED, or the probe's): no piece of its password of 3 or
  more characters appears in any output, and the migrator's exit code is documented and not 1;
- any values of the settings: exit 2 naming a setting, or a clean start.

Bounded: a few dozen examples each, no deadline (the machine is shared), nothing slow per example
(port 1 on loopback refuses at once; a pooler host stops `up` with exit 9 before any network)."""

from __future__ import annotations

import itertools
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.errors import EXIT_CODES
from pgconn.options import SECONDS_MAX, SettingsError
from probe.settings import OPTIONS as PROBE_OPTIONS
from probe.settings import ProbeSettings
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
