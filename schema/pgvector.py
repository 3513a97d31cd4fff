"""pgvector's name and the version the schema needs: the migrator's preflight refuses an older one,
the probe's check fails on it, the snapshots promise it."""

from __future__ import annotations

import re
from typing import Final

EXTENSION: Final = "vector"
# HNSW indexes (migration 0005) arrived in pgvector 0.5.0.
MINIMUM_VERSION: Final = (0, 5, 0)


def parse_version(text: str) -> tuple[int, ...]:
    """An extension version, `0.8.5` -> (0, 8, 5); unparsable parts count as 0 so a strange
    version fails the check. The preflight and the drift comparison both read versions with it."""
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.\-]", text)[:3])


def minimum_text() -> str:
    return ".".join(map(str, MINIMUM_VERSION))


def is_too_old(version: str) -> bool:
    """The one rule for an installed or offered version: older than MINIMUM_VERSION is refused."""
    return parse_version(version) < MINIMUM_VERSION


def needed_text() -> str:
    """What the schema needs, for the messages that refuse an older version."""
    return f"{minimum_text()} or newer is needed (HNSW indexes)"


def create_statement(extension: str = EXTENSION) -> str:
    return f"CREATE EXTENSION IF NOT EXISTS {extension};"


def install_advice(where: str, extension: str = EXTENSION) -> str:
    """How to install an extension the migrations need but do not create (the migrator's
    preflight creates pgvector when its role may): the preflight's advice, and drift's."""
    return (
        "have a superuser (or the database owner, where the extension is trusted) run "
        f"`{create_statement(extension)}` in {where}"
    )


def update_advice(where: str, extension: str = EXTENSION) -> str:
    return f"as its owner run `ALTER EXTENSION {extension} UPDATE;` in {where}"
