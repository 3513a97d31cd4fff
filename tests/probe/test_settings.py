"""Settings precedence and validation: flags over environment over the YAML file."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from pgconn.config import SettingsError
from pgconn.pooler import PoolerSetting
from probe.settings import ProbeSettings
from tests.probe.conftest import run_failing_start

URL = "postgresql://app:s3cret-pw@db.example:5432/kata"


def test_defaults_listen_on_all_addresses_port_8081_with_5s_rounds() -> None:
    settings = ProbeSettings.load([], {"DATABASE_URL": URL})
    assert (settings.host, settings.port) == ("0.0.0.0", 8081)
    assert (settings.interval, settings.timeout, settings.shutdown_delay) == (5.0, 2.0, 5.0)
    assert settings.staleness == 15.0
    assert settings.database.pooled is PoolerSetting.AUTO
    assert "s3cret-pw" not in repr(settings)


def test_at_the_defaults_a_catalog_change_shows_within_30_seconds() -> None:
    # The contract: the catalog is compared every schema_rounds rounds; a change right
    # after a comparison shows at the next one, which ends within one round's timeout.
    settings = ProbeSettings.load([], {"DATABASE_URL": URL})
    assert settings.schema_rounds == 5
    assert settings.schema_rounds * settings.interval + settings.timeout <= 30
    assert ProbeSettings.load(["--schema-interval", "0"], {"DATABASE_URL": URL}).schema_rounds == 1
    assert ProbeSettings.load(["--interval", "10"], {"DATABASE_URL": URL}).schema_rounds == 2


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("port: 9000\ninterval: 7\ntimeout: 3\nshutdown_delay: 1\npooled: true\n")
    env = {"DATABASE_URL": URL, "PROBE_INTERVAL": "6"}
    settings = ProbeSettings.load(["--config", str(config), "--port", "9100"], env)
    assert settings.port == 9100
    assert settings.interval == 6.0
    assert settings.timeout == 3.0
    assert settings.shutdown_delay == 1.0
    assert settings.database.pooled is PoolerSetting.TRUE


@pytest.mark.parametrize(
    ("flags", "env", "file", "expected"),
    [
        (
            ["--pooled", "true", "--migrations", "/flag"],
            ("false", "/env"),
            ("off", "/file"),
            ("true", "/flag"),
        ),
        ([], ("false", "/env"), ("on", "/file"), ("false", "/env")),
        ([], (" ", ""), ("on", "/file"), ("true", "/file")),
        ([], None, None, ("auto", None)),
    ],
)
def test_database_settings_take_flags_over_environment_over_the_file_over_default(
    tmp_path: Path,
    flags: list[str],
    env: tuple[str, str] | None,
    file: tuple[str, str] | None,
    expected: tuple[str, str | None],
) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"pooled: {file[0]}\nmigrations_dir: {file[1]}\n" if file else "")
    environment = {
        "DATABASE_URL": URL,
        **({"DATABASE_POOLED": env[0], "MIGRATIONS_DIR": env[1]} if env else {}),
    }
    database = ProbeSettings.load([*flags, "--config", str(config)], environment).database
    assert database.pooled is PoolerSetting(expected[0])
    assert database.migrations_dir == (Path(expected[1]) if expected[1] else None)


def test_the_database_url_from_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("database_url: postgresql://app@file.example/kata\n")
    settings = ProbeSettings.load(["--config", str(config)], {"DATABASE_URL": URL})
    assert settings.database.url.host == "db.example"


def test_pod_name_names_the_connection_whatever_the_file_says(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"database_url: {URL}\n")
    settings = ProbeSettings.load(["--config", str(config)], {"POD_NAME": "api-7f9c", "HOSTNAME": "other"})
    assert settings.database.application_name == "kata-probe@api-7f9c"


@pytest.mark.parametrize(
    ("argv", "env", "file", "tty", "expected"),
    [
        (["--log-format", "text"], {"PROBE_LOG_FORMAT": "json"}, "json", False, "text"),
        ([], {"PROBE_LOG_FORMAT": "JSON"}, "text", True, "json"),
        ([], {}, "text", False, "text"),
        ([], {"PROBE_LOG_FORMAT": "xml"}, None, True, "text"),  # ignored, as the migrator's
        ([], {}, None, True, "text"),
        ([], {}, None, False, "json"),
    ],
)
def test_the_log_format_is_a_setting_like_the_others_json_unless_a_terminal(
    tmp_path: Path, argv: list[str], env: dict[str, str], file: str | None, tty: bool, expected: str
) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"log_format: {file}\n" if file else "")
    settings = ProbeSettings.load([*argv, "--config", str(config)], {"DATABASE_URL": URL, **env}, tty=tty)
    assert settings.log_format == expected


def test_the_probe_writes_text_lines_when_asked_even_for_a_flag_it_refuses() -> None:
    probe = run_failing_start(["--log-format", "text", "--port", "nope"], URL)
    assert probe.returncode == 2, probe.stderr
    assert re.fullmatch(r"\S+Z ERROR config_error --port='nope' is not a port number.+\n", probe.stderr), (
        probe.stderr
    )


def test_database_url_may_come_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"database_url: {URL}\n")
    assert ProbeSettings.load(["--config", str(config)], {}).database.url.host == "db.example"


@pytest.mark.parametrize(
    ("argv", "env", "config", "message"),
    [
        ([], {}, None, "DATABASE_URL is not set"),
        ([], {"PROBE_PORT": "80a"}, None, "PROBE_PORT='80a' is not a port number"),
        ([], {"PROBE_PORT": "70000"}, None, "between 1 and 65535"),
        ([], {"PROBE_INTERVAL": "-1"}, None, "PROBE_INTERVAL='-1' is not a number of seconds"),
        ([], {"PROBE_TIMEOUT": "nan"}, None, "PROBE_TIMEOUT='nan' is not a number of seconds"),
        ([], {"PROBE_SHUTDOWN_DELAY": "1e10"}, None, "PROBE_SHUTDOWN_DELAY='1e10' is not a number"),
        ([], {"PROBE_INTERVAL": "0.01"}, None, "PROBE_INTERVAL='0.01' is out of range: use 0.05 to"),
        ([], {"PROBE_SHUTDOWN_DELAY": "9999999"}, None, "PROBE_SHUTDOWN_DELAY='9999999' is out of range"),
        ([], {"PROBE_PORT": "٨٠٨١"}, None, "PROBE_PORT='٨٠٨١' is not a port number"),
        ([], {"PROBE_PORT": "²"}, None, "PROBE_PORT='²' is not a port number"),
        ([], {"PROBE_INTERVAL": "1", "PROBE_TIMEOUT": "2"}, None, "longer than PROBE_INTERVAL"),
        ([], {"DATABASE_POOLED": "maybe"}, None, "DATABASE_POOLED='maybe': use auto, true or false"),
        (["--pooled", "maybe"], {}, None, "--pooled='maybe': use auto, true or false"),
        ([], {}, "pooled: maybe\n", "DATABASE_POOLED='maybe': use auto, true or false"),
        (["--log-format", "xml"], {}, None, "argument --log-format: invalid choice: 'xml'"),
        (["--bogus"], {}, None, "unrecognized arguments: --bogus"),
        ([], {}, "colour: blue\n", "unknown setting 'colour'"),
        ([], {}, "port: [1, 2]\n", "port must be a single value"),
        ([], {}, "port: 1\n  bad: indent\n", "is not valid YAML"),
    ],
)
def test_bad_settings_are_a_clear_error(
    tmp_path: Path, argv: list[str], env: dict[str, str], config: str | None, message: str
) -> None:
    base = {} if "DATABASE_URL is not set" in message else {"DATABASE_URL": URL}
    if config is not None:
        (tmp_path / "probe.yaml").write_text(config)
        argv = [*argv, "--config", str(tmp_path / "probe.yaml")]
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("?", r"\?")) as caught:
        ProbeSettings.load(argv, {**base, **env})
    assert "s3cret-pw" not in str(caught.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot be read"):
        ProbeSettings.load(["--config", str(tmp_path / "absent.yaml")], {"DATABASE_URL": URL})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"interval: 5 # caf\xe9\n", r"is not valid UTF-8 \(byte 17\)"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b"{a: " * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b"# padding\n" * 110_000, "larger than 1048576 bytes"),
    ],
)
def test_a_config_file_that_is_not_a_small_utf8_yaml_mapping_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    config = tmp_path / "probe.yaml"
    config.write_bytes(content)
    with pytest.raises(SettingsError, match=message):
        ProbeSettings.load(["--config", str(config)], {"DATABASE_URL": URL})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port: 9000\ninterval: 7\nport: 9001\n", "key 'port' appears twice at lines 1 and 3"),
        ("interval: 7\n'interval': 8\n", "key 'interval' appears twice at lines 1 and 2"),
        ("{port: 1, port: 2}\n", "key 'port' appears twice on line 1"),
        ("port: 1\nhost: {a: 1,\n  a: 2}\n", "key 'a' appears twice at lines 2 and 3"),
        ("x: &m {a: 1}\ny:\n  <<: *m\n  b: 2\n  b: 3\n", "key 'b' appears twice at lines 4 and 5"),
    ],
)
def test_a_setting_given_twice_in_the_config_file_is_refused_naming_it_and_its_lines(
    tmp_path: Path, content: str, message: str
) -> None:
    """YAML leaves duplicate keys to the loader, and PyYAML keeps the last one silently: an
    operator who added `port:` at the bottom would never learn the first one was ignored."""
    config = tmp_path / "probe.yaml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=re.escape(f"--config '{config}': {message}")):
        ProbeSettings.load(["--config", str(config)], {"DATABASE_URL": URL})


def test_a_merge_key_may_be_overridden_by_the_mappings_own_key(tmp_path: Path) -> None:
    """`<<` merges values that the mapping's own keys override, by YAML's rules: not a duplicate."""
    config = tmp_path / "probe.yaml"
    config.write_text("<<: {port: 9000, interval: 7}\nport: 9001\n")
    settings = ProbeSettings.load(["--config", str(config)], {"DATABASE_URL": URL})
    assert (settings.port, settings.interval) == (9001, 7.0)


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path, kind: str) -> None:
    """/dev/zero grew the probe to 4.7 GB in 6 s; a FIFO with no writer would block forever."""
    path = Path("/dev/zero") if kind == "device" else tmp_path / "probe.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    kinds = {"device": "character device", "fifo": "FIFO", "directory": "directory"}
    with pytest.raises(SettingsError, match=f"cannot be read: it is a {kinds[kind]}.*, not a regular file"):
        ProbeSettings.load(["--config", str(path)], {"DATABASE_URL": URL})


@pytest.mark.parametrize("host", ["999.1.1.1", "1.2.3.256", "h" * 300, "a..b", "bad host"])
def test_a_listen_address_that_is_no_address_is_a_setting_error(host: str) -> None:
    with pytest.raises(SettingsError, match="PROBE_HOST: "):
        ProbeSettings.load([], {"DATABASE_URL": URL, "PROBE_HOST": host})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "127.0.0.1", "::1", "localhost", "probe.kata.svc"])
def test_listen_addresses_and_names_are_accepted(host: str) -> None:
    assert ProbeSettings.load([], {"DATABASE_URL": URL, "PROBE_HOST": host}).host == host


@pytest.mark.parametrize("source", ["environment", "config file"])
def test_a_raw_slash_in_the_password_leaks_nothing_from_env_or_yaml(tmp_path: Path, source: str) -> None:
    url = "postgresql://app:Secr3t/Pa55@h:5432/db"
    config = tmp_path / "probe.yaml"
    config.write_text(f"database_url: '{url}'\n")
    argv, env = (["--config", str(config)], {}) if source == "config file" else ([], {"DATABASE_URL": url})
    with pytest.raises(SettingsError, match="must be percent-encoded") as caught:
        ProbeSettings.load(argv, env)
    assert "Secr3t" not in str(caught.value) and "Pa55" not in str(caught.value)


def test_an_address_the_probe_cannot_listen_on_is_exit_2_naming_it_and_the_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host, error in (
            ("127.0.0.1", "Address already in use"),
            ("192.0.2.1", "Cannot assign requested"),
        ):
            probe = run_failing_start(["--host", host, "--port", str(port)], "postgresql://u@127.0.0.1:1/db")
            assert probe.returncode == 2, probe.stderr
            message = json.loads(probe.stderr.splitlines()[-1])["msg"]
            assert f"cannot listen on {host}:{port}: " in message and error in message, message
