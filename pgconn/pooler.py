"""Decide whether a URL goes through a connection pooler such as PgBouncer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pgconn.config import SettingsError
from pgconn.dsn import DatabaseUrl


class PoolerSetting(Enum):
    """The operator's `DATABASE_POOLED`: force a verdict or let the host name decide."""

    AUTO = "auto"
    TRUE = "true"
    FALSE = "false"

    @classmethod
    def parse(cls, name: str, text: str) -> PoolerSetting:
        """The option's parser: auto, true or false (also 1/yes/on, 0/no/off), any case."""
        lowered = text.strip().lower()
        aliases = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}
        try:
            return cls(aliases.get(lowered, lowered) or "auto")
        except ValueError:
            raise SettingsError(f"{name}={text[:40]!r}: use auto, true or false") from None


@dataclass(frozen=True)
class PoolerVerdict:
    """Whether a connection is pooled and what decided it (setting, host, observed, default)."""

    pooled: bool
    source: str


def is_pooler_host(host: str) -> bool:
    """Neon names its PgBouncer endpoint `ep-name-pooler.region...`: a `-pooler` label."""
    return any(label.endswith("-pooler") for label in host.lower().split("."))


def decide_pooled(url: DatabaseUrl, setting: PoolerSetting) -> PoolerVerdict:
    """The verdict before any connection: an explicit setting wins, then the host name."""
    if setting is PoolerSetting.TRUE:
        return PoolerVerdict(pooled=True, source="setting")
    if setting is PoolerSetting.FALSE:
        return PoolerVerdict(pooled=False, source="setting")
    if is_pooler_host(url.host):
        return PoolerVerdict(pooled=True, source="host")
    return PoolerVerdict(pooled=False, source="default")
