#!/usr/bin/env bash
# Installs what the dashboard's browser tests drive: Debian's Chromium (apt,
# when missing and root) and the pinned playwright-core (npm; it downloads
# no browser of its own).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null
  else
    echo "install.sh: no Chromium at ${CHROMIUM:-/usr/bin/chromium}: install Debian's (apt-get install chromium) or set CHROMIUM to a Chromium binary" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: node and npm are required for the browser tests: install Node.js 20+ and npm" >&2
  exit 1
fi
if [ ! -f node_modules/playwright-core/package.json ] || [ package-lock.json -nt node_modules/playwright-core/package.json ]; then
  npm ci --no-audit --no-fund
  touch node_modules/playwright-core/package.json
fi
