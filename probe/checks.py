"""The one list of checks a probe runs. A check is one module (its class: name, queries, finding,
JSON, metrics); adding one is that module and one line in `default_checks`."""

from __future__ import annotations

from typing import Any

from probe.check import Check
from probe.database_check import DatabaseCheck, RoundTrip
from probe.pgvector_check import Extension, PgvectorCheck
from probe.schema_check import SchemaCheck, SchemaFinding
from probe.settings import ProbeSettings
from schema.catalog import Catalog, read_catalog

__all__ = [
    "DatabaseCheck",
    "Extension",
    "PgvectorCheck",
    "RoundTrip",
    "SchemaCheck",
    "SchemaFinding",
    "default_checks",
    "settings_checks",
]


def default_checks(catalog: Catalog, schema_rounds: int = 1) -> tuple[Check[Any], ...]:
    """The checks of every probe, in the order they run and are listed; the schema check compares
    the catalog every `schema_rounds` rounds."""
    return (DatabaseCheck(), PgvectorCheck(), SchemaCheck(catalog, schema_rounds))


def settings_checks(settings: ProbeSettings) -> tuple[Check[Any], ...]:
    """The list for these settings, built once at start: CatalogError or SnapshotError when the
    settings' migrations are unusable, so a bad image stops the start rather than a round."""
    return default_checks(read_catalog(settings.database.migrations_dir), settings.schema_rounds)
