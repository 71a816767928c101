#!/usr/bin/env bash
# Installs the pinned real build-cache clients the tests drive: turbo and nx
# from npm (this directory's package-lock.json), ccache from the
# distribution's packages (when apt-get can).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v ccache >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq ccache >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq ccache >/dev/null; }
  else
    echo "install.sh: ccache is required for the build-cache tests: apt-get install ccache (or your distribution's package)" >&2
    exit 1
  fi
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
