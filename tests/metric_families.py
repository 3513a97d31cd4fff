"""The probe's metric families, read from the registry of a real `create_app`: the one list that
the exposition, the docs and the dashboard are checked against; and reading an exposition back."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from probe.app import create_app
from probe.settings import ProbeSettings

PREFIX = "kata_db_"
# Never connected to: create_app opens nothing until the app starts.
UNUSED_URL = "postgresql://probe@127.0.0.1:1/kata"


def queried_name(name: str, kind: str) -> str:
    """The name a PromQL query uses: a counter family `x` is exposed (and queried) as `x_total`."""
    return f"{name}_total" if kind == "counter" else name


@cache
def registry_families() -> Mapping[str, str]:
    """Every family the probe registers (its own and the process collector's): name -> type."""
    registry = CollectorRegistry()
    create_app(ProbeSettings.from_values({"DATABASE_URL": UNUSED_URL}), registry)
    return {queried_name(metric.name, metric.type): metric.type for metric in registry.collect()}


def probe_families() -> frozenset[str]:
    """The probe's own families, `kata_db_*`, as PromQL names them."""
    return frozenset(name for name in registry_families() if name.startswith(PREFIX))


def exposition_families(text: str) -> dict[str, str]:
    """The families in a text exposition, parsed by prometheus_client: name -> type."""
    return {
        queried_name(family.name, family.type): family.type for family in text_string_to_metric_families(text)
    }


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of sample `name` with exactly `labels` in a text exposition, None if absent."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    return None
