"""The one configuration mechanism both programs use: a table of options, each with its flag,
environment variable, YAML key, default, parser and help; the sources they are read from (flags,
then environment, then a file, then the default); and the parsers for the kinds of value they take."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A missing or malformed setting; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting under its spellings: `key` (attribute and YAML key), environment variable and
    command-line flag (None: not a flag). `default` is text, parsed like a given value."""

    key: str
    env: str
    flag: str | None
    default: str | None
    parse: Callable[[str, str], T]
    help: str
    metavar: str = "VALUE"
    choices: tuple[str, ...] | None = None  # the flag's accepted values (argparse refuses others)

    def describe(self) -> str:
        """The help line: what it does, its default and its environment variable."""
        default = f", default {self.default}" if self.default not in (None, "") else ""
        return f"{self.help} ({self.env}{default})"


@dataclass(frozen=True)
class Sources:
    """Where values come from, in order of precedence: flags, environment, a file, defaults.

    `flags` holds what argparse parsed (by key, None when absent); `env` and `file` use
    environment variable names."""

    flags: Mapping[str, str | None]
    env: Mapping[str, str]
    file: Mapping[str, str] | None = None

    def text(self, option: Option[Any]) -> tuple[str, str] | None:
        """(the name to quote in an error, the text) of the first source that sets it."""
        flag_value = self.flags.get(option.key)
        if option.flag and flag_value is not None:
            return option.flag, flag_value
        for source in (self.env, self.file or {}):
            given = source.get(option.env)
            if given is not None and given.strip() != "":
                return option.env, given
        return None if option.default is None else (option.env, option.default)

    def value(self, option: Option[T]) -> T:
        """The parsed value; SettingsError when no source sets it and it has no default."""
        found = self.text(option)
        if found is None:
            raise SettingsError(f"{option.env} is not set: {option.help}")
        return option.parse(*found)

    def optional(self, option: Option[T]) -> T | None:
        """The parsed value, or None when no source sets it and it has no default."""
        found = self.text(option)
        return None if found is None else option.parse(*found)


def scan_flag(argv: Sequence[str], option: Option[Any]) -> str | None:
    """`--flag X` or `--flag=X` as argparse will read it (the last one wins), before argparse runs:
    for what must be known to report argparse's own refusals (the log format). None when absent or
    not one of the option's choices, which argparse then refuses."""
    found = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == option.flag and index + 1 < len(argv):
            found = argv[index + 1]
        elif option.flag and arg.startswith(f"{option.flag}="):
            found = arg.partition("=")[2]
    return found if option.choices is None or found in option.choices else None


def add_flags(parser: argparse.ArgumentParser, options: Sequence[Option[Any]]) -> None:
    """One argparse flag per option that has one; the value stays text until `Sources` parses it."""
    for option in options:
        if option.flag:
            parser.add_argument(
                option.flag,
                dest=option.key,
                metavar=option.metavar,
                choices=option.choices,
                help=option.describe(),
            )


def parse_text(name: str, text: str) -> str:
    return text.strip()


# PostgreSQL's timeouts are int32 milliseconds: 2,147,483 s (24.8 days) is the most any duration
# setting may be, and a millisecond the least above 0 (0.0001 s would round to 0 ms, "no timeout").
SECONDS_MAX: Final = 2_147_483.0
SECONDS_RESOLUTION: Final = 0.001
DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def parse_seconds(name: str, text: str, *, minimum: float = 0.0) -> float:
    """A duration setting in seconds: plain ASCII decimal, 0 or at least a millisecond, at least
    `minimum`, at most SECONDS_MAX; `SettingsError` naming the setting and the range otherwise."""
    value = text.strip()
    if not DECIMAL.fullmatch(value):
        raise SettingsError(f"{name}={text[:40]!r} is not a number of seconds (digits and one '.', e.g. 2.5)")
    seconds = float(value)
    if seconds < minimum or seconds > SECONDS_MAX or 0 < seconds < SECONDS_RESOLUTION:
        raise SettingsError(
            f"{name}={text[:40]!r} is out of range: use {minimum:g} to {SECONDS_MAX:.0f} seconds"
            + (", at least 0.001 above 0" if minimum < SECONDS_RESOLUTION else "")
        )
    return seconds


def seconds_at_least(minimum: float) -> Callable[[str, str], float]:
    def parse(name: str, text: str) -> float:
        return parse_seconds(name, text, minimum=minimum)

    return parse


def parse_port(name: str, text: str) -> int:
    """A TCP port: ASCII digits only (no '٣', no '+1', no spaces inside), 1 to 65535."""
    value = text.strip()
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 < int(value) < 65536:
        raise SettingsError(f"{name}={text!r} is not a port number between 1 and 65535")
    return int(value)


# PostgreSQL's memory units (case-sensitive, as in postgresql.conf) in kB.
MEMORY_UNITS: dict[str, int] = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}


def memory_between(minimum_kb: int, maximum_kb: int) -> Callable[[str, str], int]:
    """A memory size like `256MB` (kB, MB, GB, TB; ASCII digits) in kB, within the bounds."""

    def parse(name: str, text: str) -> int:
        match = re.fullmatch(r"([0-9]{1,10})\s*(kB|MB|GB|TB)", text.strip())
        if not match:
            raise SettingsError(
                f"{name}={text!r} is not a memory size: write a whole number and a unit, e.g. 256MB"
            )
        value = int(match[1]) * MEMORY_UNITS[match[2]]
        if not minimum_kb <= value <= maximum_kb:
            raise SettingsError(
                f"{name}={text!r} is out of range: use {minimum_kb // 1024}MB to {maximum_kb // 1024**2}GB"
            )
        return value

    return parse


def integer_between(minimum: int, maximum: int) -> Callable[[str, str], int]:
    """A whole number of ASCII digits within the bounds."""

    def parse(name: str, text: str) -> int:
        value = text.strip()
        if not re.fullmatch(r"[0-9]{1,6}", value) or not minimum <= int(value) <= maximum:
            raise SettingsError(f"{name}={text!r} is not a whole number between {minimum} and {maximum}")
        return int(value)

    return parse
