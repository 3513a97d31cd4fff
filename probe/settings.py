"""The probe's settings: flags, then environment, then an optional YAML file."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from pgconn.config import (
    Option,
    SettingsError,
    Sources,
    add_flags,
    parse_port,
    parse_seconds,
    seconds_at_least,
)
from pgconn.dsn import host_problem
from pgconn.files import read_regular_file
from pgconn.logs import chosen_format, log_format_option
from pgconn.settings import DATABASE_OPTIONS, DatabaseSettings

PROGRAM: Final = "kata-probe"
# libyaml's safe loader when present: it refuses 50,000-deep nesting in a millisecond, where the
# pure-Python one recurses for seconds before RecursionError (also caught, for the fallback).
SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MERGE_TAG: Final = "tag:yaml.org,2002:merge"
CONFIG_MAX_BYTES: Final = 1 << 20  # a settings file is a few hundred bytes; /dev/zero is not one
# A result older than this many intervals counts as failing: three missed rounds.
STALE_ROUNDS: Final = 3


def staleness(interval: float) -> float:
    """The age past which a round's result counts as failing."""
    return STALE_ROUNDS * interval


def stuck_after(interval: float, timeout: float) -> float:
    """Without a finished round for longer than this the monitor counts as stuck (liveness fails):
    the staleness bound plus one round's timeout, as the round due may still be running."""
    return staleness(interval) + timeout


def parse_host(name: str, text: str) -> str:
    host = text.strip()
    if not host:
        raise SettingsError(f"{name} is empty: use 0.0.0.0 (all addresses) or an IP to listen on")
    problem = host_problem(host)
    if problem:
        raise SettingsError(f"{name}: {problem}; use 0.0.0.0 (all addresses), :: or an IP to listen on")
    return host


# All addresses by default: kubelet probes the pod IP, not loopback.
HOST: Final = Option("host", "PROBE_HOST", "--host", "0.0.0.0", parse_host, "listen address", "HOST")  # noqa: S104
PORT: Final = Option("port", "PROBE_PORT", "--port", "8081", parse_port, "listen port", "PORT")
INTERVAL: Final = Option(
    "interval",
    "PROBE_INTERVAL",
    "--interval",
    "5",
    seconds_at_least(0.05),
    "seconds between check rounds",
    "SECONDS",
)
TIMEOUT: Final = Option(
    "timeout",
    "PROBE_TIMEOUT",
    "--timeout",
    "2",
    seconds_at_least(0.01),
    "seconds one round may take",
    "SECONDS",
)
SHUTDOWN_DELAY: Final = Option(
    "shutdown_delay",
    "PROBE_SHUTDOWN_DELAY",
    "--shutdown-delay",
    "5",
    parse_seconds,
    "seconds to keep answering (readyz 503) after SIGTERM",
    "SECONDS",
)
# Reading the catalog every round would cost one more transaction per round; every 25 s keeps a
# catalog change visible within 30 s (25 s plus one round's timeout) at the defaults.
SCHEMA_INTERVAL: Final = Option(
    "schema_interval",
    "PROBE_SCHEMA_INTERVAL",
    "--schema-interval",
    "25",
    parse_seconds,
    "seconds between comparisons of the live schema with the snapshot (rounded to whole rounds)",
    "SECONDS",
)
# aiohttp closes a connection that has not sent a whole request this long after it opened or
# after its last response: one bound for idle keep-alive and for half-sent headers (slowloris).
IDLE_TIMEOUT: Final = Option(
    "idle_timeout",
    "PROBE_IDLE_TIMEOUT",
    "--idle-timeout",
    "75",
    seconds_at_least(1),
    "seconds an HTTP connection may wait for its next complete request",
    "SECONDS",
)
LOG_FORMAT: Final = log_format_option("PROBE_LOG_FORMAT")
OPTIONS: Final[tuple[Option[Any], ...]] = (
    *DATABASE_OPTIONS,
    HOST,
    PORT,
    INTERVAL,
    TIMEOUT,
    SHUTDOWN_DELAY,
    SCHEMA_INTERVAL,
    IDLE_TIMEOUT,
    LOG_FORMAT,
)


@dataclass(frozen=True)
class ProbeSettings:
    """Everything the probe needs, built once; the repr never shows the password."""

    database: DatabaseSettings
    host: str = "0.0.0.0"  # noqa: S104 - a sidecar must answer kubelet on the pod IP
    port: int = 8081
    interval: float = 5.0
    timeout: float = 2.0
    shutdown_delay: float = 5.0
    schema_interval: float = 25.0
    idle_timeout: float = 75.0
    log_format: str = "json"

    @property
    def staleness(self) -> float:
        return staleness(self.interval)

    @property
    def schema_rounds(self) -> int:
        """Compare the catalog every this many rounds (at least every round)."""
        return max(1, int(self.schema_interval / self.interval + 1e-9))

    @classmethod
    def load(cls, argv: Sequence[str], env: Mapping[str, str], *, tty: bool = False) -> ProbeSettings:
        """Parse flags, read the YAML file they name, merge with `env`; SettingsError when unusable.
        `tty`: whether the log goes to a terminal (the log format's default)."""
        args = build_parser().parse_args(list(argv))
        file = read_config_file(Path(args.config)) if args.config else None
        return cls.from_sources(Sources(vars(args), env, file), tty=tty)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> ProbeSettings:
        """Build from environment-style names; defaults apply to the PROBE_* ones left out."""
        return cls.from_sources(Sources({}, values))

    @classmethod
    def from_sources(cls, sources: Sources, *, tty: bool = False) -> ProbeSettings:
        interval, timeout = sources.value(INTERVAL), sources.value(TIMEOUT)
        if timeout > interval:
            raise SettingsError(
                f"PROBE_TIMEOUT={timeout:g} is longer than PROBE_INTERVAL={interval:g}: "
                "a round must end before the next one is due"
            )
        return cls(
            database=DatabaseSettings.from_sources(sources, program=PROGRAM),
            host=sources.value(HOST),
            port=sources.value(PORT),
            interval=interval,
            timeout=timeout,
            shutdown_delay=sources.value(SHUTDOWN_DELAY),
            schema_interval=sources.value(SCHEMA_INTERVAL),
            idle_timeout=sources.value(IDLE_TIMEOUT),
            log_format=chosen_format(sources, LOG_FORMAT, tty=tty),
        )


class DuplicateKey(yaml.constructor.ConstructorError):
    """One mapping names a key twice: YAML leaves that to the loader, and PyYAML keeps the last."""

    def __init__(self, key: object, first: int, second: int) -> None:
        where = f"on line {first}" if first == second else f"at lines {first} and {second}"
        super().__init__(problem=f"key {key!r} appears twice {where}")
        self.text = f"key {key!r} appears twice {where}: keep one (YAML would silently use the last)"


class UniqueKeyLoader(SAFE_LOADER):  # type: ignore[valid-type,misc]  # the base is chosen at import
    """The safe loader, refusing a key given twice in any one mapping (nested ones too). A key
    merged in by `<<` may still be overridden by the mapping's own, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[tuple[type, object], int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get((type(key), key))
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
            if first is not None:
                raise DuplicateKey(key, first, line)
            lines[(type(key), key)] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def read_config_file(path: Path) -> dict[str, str]:
    """The YAML file as environment-style names; unknown keys, keys given twice and non-scalar
    values are errors."""
    text = read_config_text(path)
    try:
        document: Any = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a safe loader
    except DuplicateKey as exc:
        raise SettingsError(f"--config {str(path)!r}: {exc.text}") from None
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):
            raise SettingsError(
                f"--config {str(path)!r} is nested too deeply: it must be a flat mapping"
            ) from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"--config {str(path)!r} is not valid YAML{where}") from None
    except RecursionError:
        raise too_deep(path) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError(f"--config {str(path)!r} must be a mapping of setting: value")
    by_key = {o.key: o for o in OPTIONS}
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in by_key:
            raise SettingsError(
                f"--config {str(path)!r}: unknown setting {key!r}; known: {', '.join(sorted(by_key))}"
            )
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise SettingsError(
                f"--config {str(path)!r}: {key} must be a single value, not {type(value).__name__}"
            )
        values[by_key[key].env] = str(value)
    return values


def too_deep(path: Path) -> SettingsError:
    return SettingsError(f"--config {str(path)!r} is nested too deeply: it must be a flat mapping")


def read_config_text(path: Path) -> str:
    """The file's text: a regular file (never a FIFO or device, which could block or never end),
    at most CONFIG_MAX_BYTES, UTF-8."""
    try:
        raw = read_regular_file(path, CONFIG_MAX_BYTES)
    except OSError as exc:
        raise SettingsError(f"--config {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise SettingsError(
            f"--config {str(path)!r} is larger than {CONFIG_MAX_BYTES} bytes: not a settings file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"--config {str(path)!r} is not valid UTF-8 (byte {exc.start}): re-save it as UTF-8"
        ) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise SettingsError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROGRAM,
        description="Database health sidecar: /livez, /healthz, /readyz and /metrics. "
        "Flags win over the environment, which wins over the --config file.",
    )
    parser.add_argument("--config", help="YAML file with the settings below as lower-case keys")
    add_flags(parser, OPTIONS)
    return parser
