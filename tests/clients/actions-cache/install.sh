#!/usr/bin/env bash
# Installs the pinned npm @actions/cache client used by the real-client tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: node and npm are required for the @actions/cache client tests: install Node.js 20+ and npm" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "${major}" -lt 20 ]; then
  echo "install.sh: Node.js $(node --version) is too old: install Node.js 20+ and npm" >&2
  exit 1
fi

if [ ! -f node_modules/@actions/cache/package.json ] || [ package-lock.json -nt node_modules/@actions/cache/package.json ]; then
  npm ci --no-audit --no-fund
  # npm ci keeps the tarball mtimes; mark the install as newer than the lock.
  touch node_modules/@actions/cache/package.json
fi
