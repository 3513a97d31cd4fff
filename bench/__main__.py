"""`python -m bench [NAME ...]`: run every benchmark, or the named ones, and print their tables."""

from __future__ import annotations

import importlib
import sys
import time
import warnings

BENCHMARKS = (
    "probe_load",
    "db_cost",
    "latency",
    "liveness",
    "footprint",
    "migrator_peers",
    "live_load",
    "hnsw_build",
    "schema_read",
    "file_round_trips",
    "file_size",
    "kubelet_sim",
    "repair",
    "fork_index",
)


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", module="platformdirs")
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr
        )
        return 2
    for name in names:
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        print(module.run(), flush=True)
        print(f"({name}: {time.monotonic() - started:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
