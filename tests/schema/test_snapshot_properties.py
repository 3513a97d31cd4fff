"""Any bytes as a snapshot file: both programs either refuse them at the start (exit 2, naming the
file) or load a snapshot and go on; never exit 1, a traceback, or another exception.

The migrator runs in-process against a URL where nothing listens: a refused snapshot is exit 2
before the run starts, an accepted one gets as far as connecting (exit 3). The probe's start-up
builds its checks from the catalog (probe.cli.main, which maps SnapshotError to exit 2; the
defect tests run that mapping): that build either succeeds or raises SnapshotError.

Bounded: a few dozen examples of each kind, no deadline (the machine is shared)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from probe.checks import default_checks
from schema.catalog import read_catalog
from schema.expected import ExpectedSchema
from schema.snapshot import SnapshotError
from tests.migrator.conftest import MIGRATIONS, migrator_env, run_inprocess

NOWHERE = "postgresql://app:pw@127.0.0.1:1/app?sslmode=disable"
BOUNDED = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
VALID = (MIGRATIONS / "snapshots" / "0001.json").read_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, as keys and indexes from the root."""
    found = [prefix] if prefix else []
    if isinstance(value, list):
        value = dict(enumerate(value))
    for key, child in value.items() if isinstance(value, dict) else ():
        found += paths(child, (*prefix, key))
    return found


@st.composite
def one_field_changed(draw: st.DrawFn) -> bytes:
    """The valid snapshot with one value, anywhere in it, replaced by any JSON value."""
    document = json.loads(VALID)
    where = draw(st.sampled_from(paths(document)))
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = draw(json_values)
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def bytes_spliced(draw: st.DrawFn) -> bytes:
    """The valid snapshot with a few bytes replaced, cut or inserted somewhere."""
    start = draw(st.integers(0, len(VALID)))
    end = draw(st.integers(start, min(len(VALID), start + 8)))
    return VALID[:start] + draw(st.binary(max_size=8)) + VALID[end:]


snapshot_bytes = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    one_field_changed(),
    bytes_spliced(),
    st.just(VALID),
)


def migrations_with(tmp_path: Path, content: bytes) -> Path:
    directory = tmp_path / "migrations"
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "snapshots").mkdir(parents=True)
    shutil.copy(MIGRATIONS / "0001_initial_schema.sql", directory)
    (directory / "snapshots" / "0001.json").write_bytes(content)
    return directory


@BOUNDED
@given(content=snapshot_bytes)
def test_any_snapshot_bytes_are_refused_naming_the_file_or_loaded_in_both_programs(
    tmp_path: Path, content: bytes
) -> None:
    directory = migrations_with(tmp_path, content)
    snapshot = str(directory / "snapshots" / "0001.json")
    try:
        ExpectedSchema.of(read_catalog(directory))
    except SnapshotError as exc:
        refused: str | None = str(exc)
        assert snapshot in refused
    else:
        refused = None
    event("refused" if refused else "loaded")

    outcome = run_inprocess(
        ["status"], migrator_env(NOWHERE, MIGRATIONS_DIR=str(directory), MIGRATOR_CONNECT_TIMEOUT="0")
    )
    assert "Traceback" not in outcome.stderr
    if refused is None:
        assert outcome.code == 3, outcome.stderr  # went on to connect
    else:
        assert outcome.code == 2, outcome.stderr
        assert outcome.final_message == refused

    try:
        default_checks(read_catalog(directory))
    except SnapshotError as exc:
        assert str(exc) == refused
    else:
        assert refused is None
