"""The probe's settings: flags, then environment, then an optional YAML file."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from pgconn.settings import DatabaseSettings, SettingsError, parse_seconds

PROGRAM: Final = "kata-probe"


@dataclass(frozen=True)
class Option:
    """One setting under its three spellings: YAML key, environment variable, command-line flag."""

    key: str
    env: str
    flag: str | None
    help: str


OPTIONS: Final = (
    Option("database_url", "DATABASE_URL", None, "the application's PostgreSQL URL (required)"),
    Option("database_url_unpooled", "DATABASE_URL_UNPOOLED", None, "direct URL (unused by the probe)"),
    Option("pooled", "DATABASE_POOLED", "--pooled", "auto, true or false: override pooler detection"),
    Option("migrations_dir", "MIGRATIONS_DIR", "--migrations", "folder of NNNN_slug.sql files"),
    Option("host", "PROBE_HOST", "--host", "listen address (default 0.0.0.0)"),
    Option("port", "PROBE_PORT", "--port", "listen port (default 8081)"),
    Option("interval", "PROBE_INTERVAL", "--interval", "seconds between check rounds (default 5)"),
    Option("timeout", "PROBE_TIMEOUT", "--timeout", "seconds one round may take (default 2)"),
    Option(
        "shutdown_delay",
        "PROBE_SHUTDOWN_DELAY",
        "--shutdown-delay",
        "seconds to keep answering (readyz 503) after SIGTERM (default 5)",
    ),
)
# All addresses: kubelet probes the pod IP, not loopback.
DEFAULTS: Final = {
    "PROBE_HOST": "0.0.0.0",  # noqa: S104
    "PROBE_PORT": "8081",
    "PROBE_INTERVAL": "5",
    "PROBE_TIMEOUT": "2",
    "PROBE_SHUTDOWN_DELAY": "5",
}


@dataclass(frozen=True)
class ProbeSettings:
    """Everything the probe needs, built once; the repr never shows the password."""

    database: DatabaseSettings
    host: str = "0.0.0.0"  # noqa: S104 - a sidecar must answer kubelet on the pod IP
    port: int = 8081
    interval: float = 5.0
    timeout: float = 2.0
    shutdown_delay: float = 5.0

    @property
    def staleness(self) -> float:
        """A result older than this counts as failing: three missed rounds."""
        return 3 * self.interval

    @classmethod
    def load(cls, argv: Sequence[str], env: Mapping[str, str]) -> ProbeSettings:
        """Parse flags, read the YAML file they name, merge with `env`; SettingsError when unusable."""
        args = build_parser().parse_args(list(argv))
        merged: dict[str, str] = {}
        if args.config:
            merged.update(read_config_file(Path(args.config)))
        merged.update({o.env: env[o.env] for o in OPTIONS if o.env in env})
        for option in OPTIONS:
            value = getattr(args, option.key, None) if option.flag else None
            if value is not None:
                merged[option.env] = value
        for name in ("POD_NAME", "HOSTNAME"):
            if name in env:
                merged[name] = env[name]
        return cls.from_values(merged)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> ProbeSettings:
        """Build from environment-style names; defaults apply to the PROBE_* ones left out."""
        merged = {**DEFAULTS, **values}
        interval = parse_seconds("PROBE_INTERVAL", merged["PROBE_INTERVAL"], minimum=0.05)
        timeout = parse_seconds("PROBE_TIMEOUT", merged["PROBE_TIMEOUT"], minimum=0.01)
        if timeout > interval:
            raise SettingsError(
                f"PROBE_TIMEOUT={merged['PROBE_TIMEOUT']} is longer than PROBE_INTERVAL="
                f"{merged['PROBE_INTERVAL']}: a round must end before the next one is due"
            )
        host = merged["PROBE_HOST"].strip()
        if not host:
            raise SettingsError("PROBE_HOST is empty: use 0.0.0.0 (all addresses) or an IP to listen on")
        return cls(
            database=DatabaseSettings.from_env(merged, program=PROGRAM),
            host=host,
            port=parse_port(merged["PROBE_PORT"]),
            interval=interval,
            timeout=timeout,
            shutdown_delay=parse_seconds("PROBE_SHUTDOWN_DELAY", merged["PROBE_SHUTDOWN_DELAY"]),
        )


def parse_port(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SettingsError(f"PROBE_PORT={text!r} is not a port number between 1 and 65535")
    return int(value)


def read_config_file(path: Path) -> dict[str, str]:
    """The YAML file as environment-style names; unknown keys and non-scalar values are errors."""
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"--config {str(path)!r} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"--config {str(path)!r} is not valid YAML{where}") from None
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
    for option in OPTIONS:
        if option.flag:
            parser.add_argument(option.flag, dest=option.key, help=f"{option.help} [{option.env}]")
    return parser
