#!/usr/bin/env bash
# Build both images, tagged as deploy/k8s/kustomization.yaml names them:
#   kata-context/db-migrator:<version>   kata-context/db-probe:<version>   (<version>: pyproject.toml)
# with what Debian ships: podman and the runc runtime (scripts/image-tools.sh installs them).
#
#   scripts/images.sh                 base = a local Debian bookworm stand-in for python:3.11-slim,
#                                     made once with mmdebstrap (no image registry needed)
#   PYTHON_IMAGE=python:3.11.13-slim-bookworm scripts/images.sh
#                                     base = that image (pulled by podman if absent)
#
# pip inside the build reaches its index with this machine's settings, handed over as build
# secrets that never enter a layer: the index URL (PIP_INDEX_URL, else `pip config get
# global.index-url`) and a CA bundle (PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE or `pip config
# get global.cert`, for a TLS-intercepting proxy). Prints the seconds each step took.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The stand-in's name says what it is; the images' base.name label records it.
STAND_IN="localhost/kata-context/python-base:3.11-bookworm"
STAND_IN_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)"
# podman's defaults fail here: crun on a hybrid cgroup hierarchy, and raising limits it may not.
NOFILE="$(ulimit -Hn)"
PODMAN=(podman --runtime runc)

elapsed() { echo "$(( $(date +%s) - $1 ))"; }

# A Debian bookworm root filesystem with Python 3.11, venv and the CA store: what the
# Dockerfiles need from python:3.11-slim. Skipped when it already exists (the CI cache).
stand_in_base() {
    if "${PODMAN[@]}" image exists "$STAND_IN"; then
        echo "images: base $STAND_IN already built (podman rmi it to rebuild)" >&2
        return
    fi
    local started tarball
    started=$(date +%s)
    tarball="$(mktemp --suffix=.tar)"
    # Like python:*-slim: no documentation, manual pages or locales beyond C.UTF-8.
    mmdebstrap --quiet --variant=minbase --include="$STAND_IN_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$tarball"
    "${PODMAN[@]}" import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
        "$tarball" "$STAND_IN" >/dev/null
    rm -f "$tarball"
    echo "images: base $STAND_IN built with mmdebstrap in $(elapsed "$started") s" >&2
}

# pip's index and CA for the build, from this machine's settings, as secret files.
pip_secrets() {
    local dir="$1" index ca
    index="${PIP_INDEX_URL:-$(pip3 config get global.index-url 2>/dev/null || true)}"
    ca="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-$(pip3 config get global.cert 2>/dev/null || true)}}}"
    {
        echo "[global]"
        [ -n "$index" ] && echo "index-url = $index"
        [ -n "$ca" ] && echo "cert = /run/secrets/pip-ca.pem"
    } >"$dir/pip.conf"
    if [ -n "$ca" ]; then cp "$ca" "$dir/pip-ca.pem"; else : >"$dir/pip-ca.pem"; fi
}

build() {
    local dockerfile="$1" tag="$2" base="$3" secrets="$4" started
    started=$(date +%s)
    "${PODMAN[@]}" build --quiet --pull=never --network host --layers \
        --ulimit "nofile=$NOFILE:$NOFILE" --ulimit nproc=32768:32768 \
        --secret "id=pip.conf,src=$secrets/pip.conf" --secret "id=pip-ca.pem,src=$secrets/pip-ca.pem" \
        --build-arg "PYTHON_IMAGE=$base" --build-arg "VERSION=$VERSION" \
        -f "$dockerfile" -t "$tag" . >/dev/null
    echo "images: $tag built in $(elapsed "$started") s" >&2
}

main() {
    local base="${PYTHON_IMAGE:-}"
    if [ "$(id -u)" -ne 0 ] || ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        echo "images: needs root with podman and runc (rootless podman is not set up here):" >&2
        echo "  sudo scripts/system-packages.sh && sudo scripts/images.sh" >&2
        exit 1
    fi
    if [ -z "$base" ]; then
        stand_in_base
        base="$STAND_IN"
    fi
    secrets="$(mktemp -d)"
    trap 'rm -rf "$secrets"' EXIT
    pip_secrets "$secrets"
    build Dockerfile.migrator "kata-context/db-migrator:$VERSION" "$base" "$secrets"
    build Dockerfile.probe "kata-context/db-probe:$VERSION" "$base" "$secrets"
}

main "$@"
