#!/usr/bin/env bash
# Every benchmark in docs/benchmarks.md, in one run, each against its
# baseline on the same data:  bash benches/run.sh
# Run it on an otherwise idle machine; it prints the markdown tables.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q -p runcache -p runcache-bench
echo "## machine"
echo
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); $(openssl version); $(zstd --version | head -1)"
echo
echo "## save / restore against tar | zstd"
bash benches/save_restore.sh
echo
echo "## promote throughput and save-to-visible latency"
echo
echo "| what | runcache | baseline | ratio |"
echo "|---|---|---|---|"
./target/release/runcache-bench promote --artifacts 8 --mib 128
./target/release/runcache-bench latency --artifacts 1000
