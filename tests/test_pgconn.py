"""pgconn without a database: URL parsing and redaction, pooler detection, error texts, settings."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgconn.config import Option, SettingsError, Sources, parse_port, parse_seconds
from pgconn.connect import connect_options
from pgconn.dsn import InvalidDatabaseUrl, parse_database_url
from pgconn.errors import classify_error, is_authentication_failure
from pgconn.pooler import PoolerSetting, decide_pooled, is_pooler_host
from pgconn.settings import DatabaseSettings, application_name

passwords = st.text(alphabet=st.characters(codec="utf-8"), min_size=4, max_size=30)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)


@given(password=passwords, host=hosts, port=st.integers(1, 65535))
def test_url_round_trips_and_never_shows_its_password(password: str, host: str, port: int) -> None:
    url = parse_database_url(f"postgresql://app:{quote(password, safe='')}@{host}:{port}/db?sslmode=require")
    assert (url.host, url.port, url.user, url.database, url.password) == (host, port, "app", "db", password)
    assert url.sslmode == "require"
    assert url.redacted() == str(url) == f"postgresql://app:***@{host}:{port}/db?sslmode=require"
    assert "password" not in repr(url) and "***" not in repr(url)


@given(text=st.text(max_size=60))
def test_any_text_either_parses_or_raises_invalid_url_without_echoing_it(text: str) -> None:
    try:
        parse_database_url(text)
    except InvalidDatabaseUrl as exc:
        assert str(exc).startswith("DATABASE_URL is not a usable PostgreSQL URL")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host=x dbname=y",
        "postgresql://:pw@/db",
        "postgresql://u:pw@h:0/db",
        "postgresql://u:pw@h/db?foo=1",
        "postgresql://u:pw@h1,h2/db",
        "postgresql://u:pw@h/db?sslmode=strict",
    ],
)
def test_unusable_urls_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        parse_database_url(text)
    assert "pw" not in str(info.value)


def test_defaults_port_database_and_sslmode() -> None:
    url = parse_database_url("postgres://app@db.example")
    assert (url.port, url.database, url.sslmode, url.password) == (5432, "app", "prefer", None)


@pytest.mark.parametrize(
    ("host", "pooled"),
    [
        ("ep-cool-pooler.eu-central-1.aws.neon.tech", True),
        ("ep-cool.eu-central-1.aws.neon.tech", False),
        ("pooler.example", False),
        ("db-POOLER", True),
    ],
)
def test_pooler_hosts_are_recognised_by_a_pooler_label(host: str, pooled: bool) -> None:
    assert is_pooler_host(host) is pooled


def test_explicit_pooled_setting_wins_over_the_host() -> None:
    pooler = parse_database_url("postgresql://u@ep-x-pooler.invalid/db")
    direct = parse_database_url("postgresql://u@db.invalid/db")
    assert decide_pooled(pooler, PoolerSetting.AUTO).pooled
    assert not decide_pooled(pooler, PoolerSetting.FALSE).pooled
    assert decide_pooled(direct, PoolerSetting.parse("DATABASE_POOLED", "yes")).pooled
    with pytest.raises(SettingsError, match="--pooled='maybe': use auto, true or false"):
        PoolerSetting.parse("--pooled", "maybe")


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ConnectionRefusedError(), "connection refused"),
        (socket.gaierror(), "host not found"),
        (TimeoutError(), "timeout"),
        (asyncpg.InvalidPasswordError("password authentication failed for user x"), "authentication failed"),
        (asyncpg.InvalidCatalogNameError("database secret_db does not exist"), "database does not exist"),
        (ValueError("postgresql://u:hunter2@h"), "unexpected error"),
    ],
)
def test_errors_are_classified_into_fixed_texts(exc: BaseException, text: str) -> None:
    assert classify_error(exc) == text
    assert is_authentication_failure(exc) is (text == "authentication failed")


def test_database_settings_from_the_environment_and_their_errors(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://u:pw@h/db", "POD_NAME": "job-abc", "MIGRATIONS_DIR": str(tmp_path)}
    settings = DatabaseSettings.from_sources(Sources({}, env), program="kata-migrate")
    assert settings.application_name == "kata-migrate@job-abc"
    assert settings.migrations_dir == tmp_path and settings.unpooled_url is None
    assert settings.pooled is PoolerSetting.AUTO
    assert "pw" not in repr(settings)
    for unset in ({}, {"DATABASE_URL": " "}):
        with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
            DatabaseSettings.from_sources(Sources({}, unset), program="kata-migrate")
    with pytest.raises(SettingsError, match="DATABASE_URL_UNPOOLED is not a usable PostgreSQL URL"):
        DatabaseSettings.from_sources(Sources({}, {**env, "DATABASE_URL_UNPOOLED": "nope"}), program="k")


@pytest.mark.parametrize(
    ("flags", "env", "file", "pooled", "directory"),
    [
        ({"pooled": "true", "migrations_dir": "/flag"}, {"DATABASE_POOLED": "off"}, {}, "true", "/flag"),
        ({"pooled": None}, {"DATABASE_POOLED": "off", "MIGRATIONS_DIR": "/env"}, {}, "false", "/env"),
        ({}, {"DATABASE_POOLED": " "}, {"DATABASE_POOLED": "1", "MIGRATIONS_DIR": "/file"}, "true", "/file"),
        ({}, {}, {}, "auto", None),
    ],
)
def test_database_settings_take_flags_over_environment_over_file_over_default(
    flags: dict[str, str | None],
    env: dict[str, str],
    file: dict[str, str],
    pooled: str,
    directory: str | None,
) -> None:
    sources = Sources(flags, {"DATABASE_URL": "postgresql://u@env.invalid/db", **env}, file)
    settings = DatabaseSettings.from_sources(sources, program="kata-probe")
    assert settings.pooled is PoolerSetting(pooled)
    assert settings.migrations_dir == (Path(directory) if directory else None)


def test_application_name_is_the_pod_then_the_host_and_fits_postgresql() -> None:
    assert application_name("kata-probe", {"POD_NAME": "api-7f9c", "HOSTNAME": "h"}) == "kata-probe@api-7f9c"
    assert application_name("kata-probe", {"POD_NAME": " ", "HOSTNAME": "h"}) == "kata-probe@h"
    assert len(application_name("kata-migrate", {"POD_NAME": "x" * 100})) == 63


def test_application_name_is_cut_to_63_bytes_never_inside_a_character() -> None:
    name = application_name("kata-migrate", {"POD_NAME": "é" * 60})  # 2 bytes each
    assert name == "kata-migrate@" + "é" * 25
    assert len(name.encode()) == 63


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        *[("1.5", True), ("0", True), ("0.001", True), ("2147483", True), (" 3 ", True), (".5", True)],
        *[("-1", False), ("nan", False), ("inf", False), ("-inf", False), ("soon", False), ("", False)],
        *[("1e10", False), ("2147484", False), ("0.0001", False), ("٨", False), ("1_0", False)],
    ],
)
def test_durations_are_ascii_decimal_seconds_within_what_postgresql_can_take(text: str, ok: bool) -> None:
    if ok:
        assert parse_seconds("X", text) == float(text)
    else:
        with pytest.raises(SettingsError, match="X="):
            parse_seconds("X", text)


@pytest.mark.parametrize(
    ("text", "port"),
    [
        *[("5432", 5432), (" 1 ", 1), ("65535", 65535), ("0", None), ("65536", None), ("٣", None)],
        *[("+1", None), ("1 2", None), ("", None), ("0x50", None), ("123456", None)],
    ],
)
def test_one_port_parser_takes_ascii_digits_from_1_to_65535(text: str, port: int | None) -> None:
    if port is None:
        with pytest.raises(SettingsError, match=r"PORT_X=.* is not a port number between 1 and 65535"):
            parse_port("PORT_X", text)
    else:
        assert parse_port("PORT_X", text) == port


def test_a_url_port_uses_the_same_parser() -> None:
    with pytest.raises(InvalidDatabaseUrl, match="the port is not a number between 1 and 65535"):
        parse_database_url("postgresql://u:p@h:٣/db")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("postgresql://app:Secr3t/Pa55@h:5432/db", "'/' or '?' comes before the '@'"),
        ("postgresql://app:Ab@Secr3t:Pa55/x@h:5432/db", "more than one '@'"),
        ("postgresql://app:Secr3t#Pa55@h:5432/db", "contains '#'"),
        ("postgresql://app:Secr3t?Pa55@h:5432/db", "'/' or '?' comes before the '@'"),
        ("postgresql://app@h:Secr3tPa55/db", "the port is not a number"),
        ("postgresql://app@h/db?password=Secr3t&Pa55=1", "an unknown parameter"),
    ],
)
def test_a_password_with_raw_reserved_characters_is_refused_without_quoting_any_of_it(
    text: str, rule: str
) -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        parse_database_url(text)
    message = str(info.value)
    assert rule in message
    assert "must be percent-encoded" in message or "an unknown parameter" in message
    for part in ("Secr3t", "Pa55", "Secr", "r3t", "Pa5", "a55"):
        assert part not in message


def test_percent_encoded_reserved_characters_give_the_password_back() -> None:
    url = parse_database_url("postgresql://app:Ab%40Secr3t%3APa55%2Fx%23%3F@h:5432/db")
    assert (url.password, url.host, url.port, url.database) == ("Ab@Secr3t:Pa55/x#?", "h", 5432, "db")
    assert parse_database_url("postgresql://app:a:b:c@h/db").password == "a:b:c"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("postgresql://u:p@" + "a" * 100_000 + ":5432/db", "not a valid DNS name"),
        ("postgresql://u:p@" + "a" * 64 + ".example/db", "not a valid DNS name"),
        ("postgresql://u:p@999.1.1.1/db", "looks like an IPv4 address"),
        ("postgresql://u:p@h/db?connect_timeout=abc", "connect_timeout must be a whole number"),
        ("postgresql://u:p@h/db?connect_timeout=-1", "connect_timeout must be a whole number"),
        ("postgresql://u:p@h/" + "d" * 100_000, "the database name is 100000 bytes long"),
        ("postgresql://" + "u" * 64 + ":p@h/db", "the user name is 64 bytes long"),
        ("postgresql://u:p@h/db?application_name=" + "a" * 100_000, "application_name is 100000 bytes"),
        ("postgresql://u:p@h/" + "é" * 32, "the database name is 64 bytes long"),
    ],
)
def test_hosts_names_and_timeouts_the_server_cannot_take_are_refused_up_front(text: str, rule: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match=rule):
        parse_database_url(text)


def test_names_at_the_limit_and_real_addresses_are_accepted() -> None:
    url = parse_database_url("postgresql://" + "u" * 63 + "@[::1]:5433/" + "d" * 63 + "?connect_timeout=0")
    assert (url.host, url.port, url.connect_timeout) == ("::1", 5433, None)
    assert parse_database_url("postgresql://u@h/db?connect_timeout=7").connect_timeout == 7.0
    assert parse_database_url("postgresql://u@bücher.example/db").host == "bücher.example"
    assert parse_database_url("postgresql://u@h/db?host=/run/postgresql").host == "/run/postgresql"


SECONDS = Option("wait", "X_WAIT", "--wait", "5", parse_seconds, "seconds to wait")


@pytest.mark.parametrize(
    ("flags", "env", "file", "expected"),
    [
        ({"wait": "1"}, {"X_WAIT": "2"}, {"X_WAIT": "3"}, ("--wait", 1.0)),
        ({"wait": None}, {"X_WAIT": "2"}, {"X_WAIT": "3"}, ("X_WAIT", 2.0)),
        ({}, {"X_WAIT": " "}, {"X_WAIT": "3"}, ("X_WAIT", 3.0)),
        ({}, {}, None, ("X_WAIT", 5.0)),
    ],
)
def test_flags_win_over_environment_over_file_over_default(
    flags: dict[str, str | None],
    env: dict[str, str],
    file: dict[str, str] | None,
    expected: tuple[str, float],
) -> None:
    sources = Sources(flags, env, file)
    found = sources.text(SECONDS)
    assert found is not None and (found[0], sources.value(SECONDS)) == expected


def test_a_bad_value_is_named_by_where_it_came_from() -> None:
    with pytest.raises(SettingsError, match="--wait='soon' is not a number of seconds"):
        Sources({"wait": "soon"}, {}).value(SECONDS)
    with pytest.raises(SettingsError, match=r"X_WAIT='0\.0001' is out of range: use 0 to 2147483 seconds"):
        Sources({}, {"X_WAIT": "0.0001"}).value(SECONDS)


@pytest.mark.parametrize(
    ("query", "expected"), [("?connect_timeout=300", 5.0), ("?connect_timeout=2", 2.0), ("", 5.0)]
)
def test_the_urls_connect_timeout_may_shorten_the_callers_bound_but_never_lengthen_it(
    query: str, expected: float
) -> None:
    url = parse_database_url("postgresql://u@h/db" + query)
    assert connect_options(url, application_name="t", timeout=5.0)["timeout"] == expected


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("postgresql://u:Sentinel\udcffpw@h/db", "the password"),  # a raw byte, as os.environ decodes it
        ("postgresql://u:Sentinel%FFpw@h/db", "the password"),
        ("postgresql://Sentinel\udcff:pw@h/db", "the user name"),
    ],
)
def test_a_user_or_password_that_is_not_utf8_is_refused_without_quoting_it(url: str, what: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match=f"{what} is not valid UTF-8") as raised:
        parse_database_url(url)
    assert "Sentinel" not in str(raised.value)
