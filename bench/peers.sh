#!/usr/bin/env bash
# Install the migration tools the benchmark compares against into bench/.work (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -c 'from bench import peers; peers.install()'
