#!/usr/bin/env bash
# Benchmark: `runcache save`/`restore` (local backend) against the plain
# pipelines `tar -cf - P | zstd -T0 -3 > f` and `zstd -d -T0 -c f | tar -xf -`
# on the same trees in the same run, plus peak RSS of each.
#
#   bash benches/save_restore.sh            # writes docs/benchmarks.md's table
#   BENCH_DIR=/big/disk SIZE_GIB=2 bash benches/save_restore.sh
#
# Corpora (built once under $BENCH_DIR, default /tmp/runcache-bench):
#   node_modules  npm install of benches/corpora/package.json (pinned)
#   target        a real cargo target/ (this repo's release build)
#   mixed-2g      $SIZE_GIB GiB of files, half random, half text (peak RSS)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="${BENCH_DIR:-/tmp/runcache-bench}"
size_gib="${SIZE_GIB:-2}"
runs="${RUNS:-3}"
mkdir -p "$bench"
command -v zstd >/dev/null || { echo "zstd is needed: apt-get install zstd" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }

echo "building runcache (release)..." >&2
(cd "$root" && cargo build --release -q -p runcache)
bin="$root/target/release/runcache"

# --- corpora -----------------------------------------------------------------
if [ ! -d "$bench/node_modules/node_modules" ]; then
  echo "corpus node_modules: npm install (pinned)..." >&2
  mkdir -p "$bench/node_modules"
  cp "$root/benches/corpora/package.json" "$bench/node_modules/"
  (cd "$bench/node_modules" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
fi
if [ ! -d "$bench/target/target" ]; then
  echo "corpus target: copying this repo's target/release..." >&2
  mkdir -p "$bench/target/target"
  cp -a "$root/target/release" "$bench/target/target/"
fi
if [ ! -d "$bench/mixed-2g/data" ]; then
  echo "corpus mixed-${size_gib}g: generating..." >&2
  mkdir -p "$bench/mixed-2g/data"
  n=$(( size_gib * 8 ))
  for i in $(seq 1 "$n"); do
    if [ $(( i % 2 )) -eq 0 ]; then
      head -c $((128 << 20)) /dev/urandom > "$bench/mixed-2g/data/random-$i.bin"
    else
      yes "runcache benchmark line $i: the quick brown fox jumps over the lazy dog" \
        | head -c $((128 << 20)) > "$bench/mixed-2g/data/text-$i.txt"
    fi
  done
fi

# --- measurement -------------------------------------------------------------
# measure CMD... -> prints "seconds peak_kib" (best of $runs by time)
measure() {
  local best="" out
  for _ in $(seq 1 "$runs"); do
    [ -n "${PREP:-}" ] && eval "$PREP"
    sync
    /usr/bin/time -f '%e %M' -o "$bench/.time" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
    out=$(tail -1 "$bench/.time")
    if [ -z "$best" ] || awk -v a="${out%% *}" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then best="$out"; fi
  done
  echo "$best"
}

rows=()
for corpus in node_modules target mixed-2g; do
  dir="$bench/$corpus"
  case "$corpus" in
    node_modules) path=node_modules ;;
    target) path=target ;;
    *) path=data ;;
  esac
  bytes=$(du -sb "$dir/$path" | cut -f1)
  work="$bench/work-$corpus"; rm -rf "$work"; mkdir -p "$work"
  echo "== $corpus ($path, $(( bytes >> 20 )) MiB)" >&2

  base_save=$(PREP="rm -f '$work/f.tzst'" measure sh -c "tar -cf - -C '$dir' '$path' | zstd -q -T0 -3 -o '$work/f.tzst'")
  archive_bytes=$(stat -c %s "$work/f.tzst")
  base_restore=$(PREP="rm -rf '$work/out' && mkdir -p '$work/out'" measure sh -c "zstd -q -d -T0 -c '$work/f.tzst' | tar -xf - -C '$work/out'")

  export RUNCACHE_HOME="$work/home"
  rc_save=$(PREP="rm -rf '$work/home'" measure sh -c "cd '$dir' && exec '$bin' -q save --key bench --path '$path'")
  rc_restore=$(PREP="rm -rf '$work/ws' && mkdir -p '$work/ws'" measure sh -c "cd '$work/ws' && exec '$bin' -q restore --key bench --path '$path'")
  unset RUNCACHE_HOME

  ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
  rows+=("| $corpus | $(( bytes >> 20 )) MiB → $(( archive_bytes >> 20 )) MiB | ${rc_save%% *} s / ${base_save%% *} s = **$(ratio "${rc_save%% *}" "${base_save%% *}")** | ${rc_restore%% *} s / ${base_restore%% *} s = **$(ratio "${rc_restore%% *}" "${base_restore%% *}")** | $(( ${rc_save##* } / 1024 )) MiB / $(( ${rc_restore##* } / 1024 )) MiB | $(( ${base_save##* } / 1024 )) MiB / $(( ${base_restore##* } / 1024 )) MiB |")
  rm -rf "$work"
done

echo
echo "| corpus | size (tree → archive) | save: runcache / tar\|zstd = ratio | restore: runcache / zstd\|tar = ratio | peak RSS runcache save / restore | peak RSS pipeline (largest process) save / restore |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
