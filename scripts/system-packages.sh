#!/usr/bin/env bash
# Debian packages the tests use: PgBouncer, Prometheus (promtool), jq, PostgreSQL 15 (no pgvector,
# for the preflight tests; built with OpenSSL, for TLS tests), wrk and hey (benchmarks), and
# what builds and runs the images without Docker (scripts/images.sh, tests/images/): podman with
# the runc runtime (crun fails here: "cgroups in hybrid mode not supported") and mmdebstrap for
# the local stand-in of the python:3.11-slim base.
# As root, install what is missing; otherwise say the exact command and let the tests skip.
set -euo pipefail
packages=(pgbouncer prometheus jq postgresql-15 wrk hey podman runc mmdebstrap)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system packages missing: ${missing[*]}; their tests will be skipped." >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian's packages try to start services; policy-rc.d in containers refuses, which is fine.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
