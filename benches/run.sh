#!/usr/bin/env bash
# Every benchmark in docs/benchmarks.md, each against its baseline on the
# same data in the same run, and the workload simulation. One command:
#
#   bash benches/run.sh                      # the documented run (~10 min on 2 cores)
#   SIZE_MB=64 RUNS=1 bash benches/run.sh    # a quick smoke run (docs left alone)
#
# It writes the tables to $RESULTS and, for the documented configuration
# (SIZE_MB=1024), into docs/benchmarks.md between its `<!-- bench:NAME -->`
# markers, so that one run regenerates every table there.
#
# Settings (environment):
#   BENCH_DIR    corpora and scratch space (default /tmp/runcache-bench);
#                corpora are built once and reused
#   SIZE_MB      size of the incompressible and compressible files, and of
#                the promote batch (default 1024)
#   RUNS         runs per timing, the median is reported (default 5)
#   ONLY         sections to run (default: machine save_restore serve build_cache hash promote lookup simulate)
#   CORPORA      save_restore's corpora (default: all six below; a subset
#                leaves docs/benchmarks.md alone)
#   PROFILE      cargo profile of the binaries (default release)
#   TARGET_SRC   the cargo target/ copied as a corpus (default: this repo's
#                target/release, after the build below)
#   RESULTS      where the tables go (default $BENCH_DIR/results.md)
#   UPDATE_DOCS  1 to splice the tables into docs/benchmarks.md (default: 1
#                when SIZE_MB=1024, else 0)
#
# Corpora ($BENCH_DIR):
#   node_modules/  `npm install` of benches/corpora/package.json (pinned)
#   target/        a real cargo target/ ($TARGET_SRC)
#   random-${SIZE_MB}m/  one file of SIZE_MB MiB from /dev/urandom (incompressible)
#   text-${SIZE_MB}m/    one file of SIZE_MB MiB of real source text: the
#                  node_modules corpus as a tar, repeated (compresses as
#                  JavaScript does, ~5:1)
#   big-${SIZE_MB}m/     target/ and random-${SIZE_MB}m/ in one tree, as hard
#                  links (over 2 GB at the default size: the peak-RSS check)
#   mixed/         system files as real trees hold them: a copy (`cp -a`, so
#                  hard links and symlinks kept) of the Python standard
#                  library, /usr/share/doc and /usr/lib/<arch> (shared
#                  libraries and their symlinks, Mesa's drivers hard-linked
#                  many times): many medium files, compressible binaries
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bench="${BENCH_DIR:-/tmp/runcache-bench}"
size_mb="${SIZE_MB:-1024}"
runs="${RUNS:-5}"
only="${ONLY:-machine save_restore serve build_cache hash promote lookup simulate}"
profile="${PROFILE:-release}"
results="${RESULTS:-$bench/results.md}"
all_corpora="node_modules target random-${size_mb}m text-${size_mb}m big-${size_mb}m mixed"
corpora="${CORPORA:-$all_corpora}"
update_docs="${UPDATE_DOCS:-$([ "$size_mb" = 1024 ] && [ "$corpora" = "$all_corpora" ] && echo 1 || echo 0)}"
doc="$root/docs/benchmarks.md"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin_dir="$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")"
out="$bench/results"
mkdir -p "$bench" "$out"
wants() { [[ " $only " == *" $1 "* ]]; }
log() { echo "[bench] $*" >&2; }

# --- prerequisites (as .ci/run installs what the tests need) -----------------
need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if wants lookup && ! command -v moto_server >/dev/null; then
  python3 -m pip install --quiet 'moto[server]'
fi

log "building runcache and runcache-bench ($profile)..."
cargo build --profile "$profile" -q -p runcache -p runcache-bench
rc="$bin_dir/runcache"
rcb="$bin_dir/runcache-bench"

# --- corpora -----------------------------------------------------------------
random="$bench/random-${size_mb}m"
text="$bench/text-${size_mb}m"
if wants save_restore || wants hash || wants serve; then
  if [ ! -d "$bench/node_modules/node_modules" ]; then
    log "corpus node_modules: npm install (pinned)..."
    mkdir -p "$bench/node_modules"
    cp "$root/benches/corpora/package.json" "$bench/node_modules/"
    (cd "$bench/node_modules" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  fi
  if [ ! -d "$bench/target/target" ]; then
    src="${TARGET_SRC:-$target_dir/release}"
    [ -d "$src" ] || { echo "no cargo target/ to copy at $src: set TARGET_SRC" >&2; exit 1; }
    log "corpus target: copying $src..."
    mkdir -p "$bench/target/target"
    cp -a "$src/." "$bench/target/target/"
  fi
  if [ ! -f "$random/data/random.bin" ]; then
    log "corpus random-${size_mb}m..."
    mkdir -p "$random/data"
    head -c "$((size_mb << 20))" /dev/urandom > "$random/data/random.bin.tmp"
    mv "$random/data/random.bin.tmp" "$random/data/random.bin"
  fi
  # Over 2 GB in one save (the issue's peak-RSS check): hard links to the
  # two corpora above, so it costs no disk space.
  if [ ! -d "$bench/big-${size_mb}m/tree" ]; then
    log "corpus big-${size_mb}m (hard links)..."
    mkdir -p "$bench/big-${size_mb}m/tree.tmp"
    cp -al "$bench/target/target" "$bench/big-${size_mb}m/tree.tmp/target"
    cp -al "$random/data" "$bench/big-${size_mb}m/tree.tmp/random"
    mv "$bench/big-${size_mb}m/tree.tmp" "$bench/big-${size_mb}m/tree"
  fi
  if [ ! -d "$bench/mixed/tree" ]; then
    log "corpus mixed (system files)..."
    rm -rf "$bench/mixed/tree.tmp"; mkdir -p "$bench/mixed/tree.tmp"
    # One cp, so hard links between the three stay links.
    py=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
    cp -a "$py" /usr/share/doc "/usr/lib/$(uname -m)-linux-gnu" "$bench/mixed/tree.tmp/"
    mv "$bench/mixed/tree.tmp" "$bench/mixed/tree"
  fi
  if [ ! -f "$text/data/text.txt" ]; then
    log "corpus text-${size_mb}m..."
    mkdir -p "$text/data"
    tar -cf "$text/one.tar" -C "$bench/node_modules" node_modules
    # cat stops at the first write head refuses.
    while cat "$text/one.tar"; do :; done 2>/dev/null | head -c "$((size_mb << 20))" > "$text/data/text.txt.tmp" || true
    rm "$text/one.tar"
    mv "$text/data/text.txt.tmp" "$text/data/text.txt"
  fi
fi

# --- measurement -------------------------------------------------------------
# measure CMD... -> "seconds peak_kib": medians of $runs runs; $PREP (if set)
# runs before each.
measure() {
  local times=() rss=() line
  for _ in $(seq 1 "$runs"); do
    [ -n "${PREP:-}" ] && eval "$PREP"
    sync
    /usr/bin/time -f '%e %M' -o "$bench/.time" "$@" >/dev/null 2>"$bench/.stderr" \
      || { echo "failed: $*" >&2; cat "$bench/.stderr" >&2; exit 1; }
    line=$(tail -1 "$bench/.time")
    times+=("${line% *}"); rss+=("${line#* }")
  done
  echo "$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p") $(printf '%s\n' "${rss[@]}" | sort -g | sed -n "$(( (runs + 1) / 2 ))p")"
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# measure_alt PREP1 CMD1 [PREP2 CMD2 ...] -> one line per command, "seconds
# peak_kib" (medians of $runs runs). The runs interleave (round r runs every
# command once, starting with a different one each round), so all commands
# meet the same machine and filesystem state: on ext4 without a journal,
# creating files right after a large delete is slow for about a minute
# (recently freed inodes are skipped one by one), whichever tool does it.
measure_alt() {
  local n=$(( $# / 2 )) args=("$@") r k i line
  local -a times=() rss=()
  for r in $(seq 1 "$runs"); do
    for k in $(seq 0 $(( n - 1 ))); do
      i=$(( (k + r - 1) % n ))
      eval "${args[$(( 2 * i ))]}"
      sync
      /usr/bin/time -f '%e %M' -o "$bench/.time" sh -c "${args[$(( 2 * i + 1 ))]}" >/dev/null 2>"$bench/.stderr" \
        || { echo "failed: ${args[$(( 2 * i + 1 ))]}" >&2; cat "$bench/.stderr" >&2; exit 1; }
      line=$(tail -1 "$bench/.time")
      times[i]+="${line% *} "; rss[i]+="${line#* } "
    done
  done
  for i in $(seq 0 $(( n - 1 ))); do
    # shellcheck disable=SC2086 # word splitting of the lists is wanted
    echo "$(median ${times[i]}) $(median ${rss[i]})"
  done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f", n / 1e6 / s; else print "n/a" }'; }
mib() { echo "$(( $1 / 1024 )) MiB"; }

if wants machine; then
  log "machine"
  {
    echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)."
    echo "$(openssl version | cut -d' ' -f1-2); $(zstd --version | grep -o 'v[0-9.]*' | head -1 | sed 's/^/zstd /'); $(tar --version | head -1); $(sha256sum --version | head -1)."
    echo "runcache $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), profile $profile; SIZE_MB=$size_mb, RUNS=$runs (medians)."
    dd if=/dev/zero of="$bench/.dd" bs=1M count=1024 conv=fsync 2>"$bench/.dd.err" || cat "$bench/.dd.err" >&2
    echo "Disk under $bench: 1 GiB written and fsynced at $(grep -o '[0-9.,]* [MG]B/s' "$bench/.dd.err" | tail -1) (\`dd conv=fsync\`): a durable save of incompressible bytes cannot beat that."
    rm -f "$bench/.dd" "$bench/.dd.err"
    echo "Load average when the run started: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; near 0 means the machine was otherwise idle)."
  } > "$out/machine.md"
fi

if wants save_restore; then
  rows=() small_files=()
  for corpus in $corpora; do
    dir="$bench/$corpus"
    case "$corpus" in
      node_modules) path=node_modules; what="node_modules (\`npm install\` of \`benches/corpora/package.json\`, $(find "$dir/$path" -type f | wc -l) files)" ;;
      target) path=target; what="cargo \`target/\` (a real release build, $(find "$dir/$path" -type f | wc -l) files)" ;;
      random-*) path=data; what="incompressible: one file from /dev/urandom" ;;
      text-*) path=data; what="compressible: one file of JavaScript sources (tar of node_modules, repeated)" ;;
      big-*) path=tree; what="large: the cargo \`target/\` and the incompressible file in one tree ($(find "$dir/$path" -type f | wc -l) files)" ;;
      mixed) path=tree; what="mixed system files: Python stdlib, /usr/share/doc, shared libraries ($(find "$dir/$path" -type f | wc -l) files, $(find "$dir/$path" -type f -links +1 | wc -l) of them hard-linked, $(find "$dir/$path" -type l | wc -l) symlinks)" ;;
    esac
    bytes=$(du -sb "$dir/$path" | cut -f1)
    work="$bench/work"; rm -rf "$work"; mkdir -p "$work"
    log "save/restore: $corpus ($(( bytes >> 20 )) MiB)"

    home="$work/home"
    measure_alt \
      "rm -f '$work/f.tzst'" "tar -cf - -C '$dir' '$path' | zstd -q -T0 -3 -o '$work/f.tzst'" \
      "rm -rf '$home'" "cd '$dir' && RUNCACHE_HOME='$home' exec '$rc' -q save --repository bench/bench --key bench --path '$path'" \
      "rm -f '$work/p.tzst'" "tar --posix -cf - -C '$dir' '$path' | zstd -q -T0 -3 -o '$work/p.tzst'" \
      "rm -f '$work/d.tzst'" "tar -cf - -C '$dir' '$path' | zstd -q -T0 -3 -o '$work/d.tzst' && sync '$work/d.tzst'" \
      > "$bench/.saves"
    { read -r base_save; read -r rc_save; read -r posix_save; read -r durable_save; } < "$bench/.saves"
    archive=$(stat -c %s "$work/f.tzst")
    if [ "$corpus" = node_modules ] || [ "$corpus" = mixed ]; then
      # Many small files: first into fresh directories, nothing deleted
      # in between (every run creates its own tree; all go at the end).
      fresh_n=0
      measure_alt \
        "fresh_n=\$((fresh_n + 1)); export dest='$work/fresh/'\$fresh_n; mkdir -p \"\$dest\"" "zstd -q -d -T0 -c '$work/f.tzst' | tar -xf - -C \"\$dest\"" \
        "fresh_n=\$((fresh_n + 1)); export dest='$work/fresh/'\$fresh_n; mkdir -p \"\$dest\"" "cd \"\$dest\" && RUNCACHE_HOME='$home' exec '$rc' -q restore --repository bench/bench --fail-on-cache-miss --key bench --path '$path'" \
        > "$bench/.fresh"
      { read -r fresh_base; read -r fresh_rc; } < "$bench/.fresh"
    fi
    measure_alt \
      "rm -rf '$work/out' '$work/ws' && mkdir -p '$work/out'" "zstd -q -d -T0 -c '$work/f.tzst' | tar -xf - -C '$work/out'" \
      "rm -rf '$work/out' '$work/ws' && mkdir -p '$work/ws'" "cd '$work/ws' && RUNCACHE_HOME='$home' exec '$rc' -q restore --repository bench/bench --fail-on-cache-miss --key bench --path '$path'" \
      > "$bench/.restores"
    { read -r base_restore; read -r rc_restore; } < "$bench/.restores"
    rm -rf "$work"
    if [ "$corpus" = node_modules ] || [ "$corpus" = mixed ]; then
      small_files+=("| $what | ${fresh_rc% *} s / ${fresh_base% *} s = **$(ratio "${fresh_rc% *}" "${fresh_base% *}")** | ${rc_restore% *} s / ${base_restore% *} s = **$(ratio "${rc_restore% *}" "${base_restore% *}")** |")
    fi

    rows+=("| $what | $(( bytes >> 20 )) MiB → $(( archive >> 20 )) MiB | ${rc_save% *} s / ${base_save% *} s = **$(ratio "${rc_save% *}" "${base_save% *}")** | ${posix_save% *} s: $(ratio "${rc_save% *}" "${posix_save% *}") | ${durable_save% *} s: $(ratio "${rc_save% *}" "${durable_save% *}") | ${rc_restore% *} s / ${base_restore% *} s = **$(ratio "${rc_restore% *}" "${base_restore% *}")** | $(mib "${rc_save#* }") / $(mib "${rc_restore#* }") | $(mib "${base_save#* }") / $(mib "${base_restore#* }") |")
  done
  {
    echo "| corpus | size (tree → archive) | save: runcache / tar\|zstd = ratio | save: \`tar --posix\`\|zstd (actions/cache's tar format), runcache's ratio to it | save: tar\|zstd, then \`sync FILE\` (durable, as runcache's store is), runcache's ratio to it | restore: runcache / zstd\|tar = ratio | peak RSS runcache save / restore | peak RSS pipeline (largest process) save / restore |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } > "$out/save_restore.md"
  {
    echo "| corpus | restore into a fresh directory: runcache / zstd\|tar = ratio | right after deleting the previous restore: runcache / zstd\|tar = ratio |"
    echo "|---|---|---|"
    printf '%s\n' "${small_files[@]}"
  } > "$out/small_files.md"
fi

if wants serve; then
  # The real @actions/cache client through `runcache serve` (local
  # backend, release build), against `runcache save/restore` of the same
  # tree and the tar|zstd pipelines, interleaved; then serve's peak RSS
  # while 8 clients upload and download at once.
  bash "$root/tests/clients/actions-cache/install.sh" >/dev/null
  client="$root/tests/clients/actions-cache/client.mjs"
  sv="$bench/serve"; rm -rf "$sv"; mkdir -p "$sv/tmp"
  printf '[[token]]\ntoken = "bench"\nrepository = "bench/bench"\nref = "refs/heads/main"\ntrust = "protected"\n' > "$sv/tokens.toml"
  # start_serve HOME -> sets serve_pid, serve_url
  start_serve() {
    RUNCACHE_HOME="$1" "$rc" serve --listen 127.0.0.1:0 --tokens "$sv/tokens.toml" \
      > "$sv/serve.out" 2> "$sv/serve.err" &
    serve_pid=$!
    for _ in $(seq 1 100); do grep -q '^listening on' "$sv/serve.out" 2>/dev/null && break; sleep 0.1; done
    serve_url="$(sed -n 's/^listening on //p' "$sv/serve.out")/"
    [ "$serve_url" != / ] || { echo "runcache serve did not start:" >&2; cat "$sv/serve.err" >&2; exit 1; }
  }
  stop_serve() { kill -TERM "$serve_pid"; wait "$serve_pid" || true; }
  # The job's environment for the client (v2, as actions/cache 4 uses it).
  job_env() { echo "ACTIONS_CACHE_SERVICE_V2=true ACTIONS_RESULTS_URL='$serve_url' ACTIONS_RUNTIME_TOKEN=bench RUNNER_TEMP='$sv/tmp' HOME='$sv/tmp' GITHUB_WORKSPACE=\"\$PWD\""; }
  rows=()
  for corpus in "text-${size_mb}m" "random-${size_mb}m"; do
    dir="$bench/$corpus"; path=data
    case "$corpus" in
      random-*) what="incompressible: one file from /dev/urandom" ;;
      text-*) what="compressible: one file of JavaScript sources" ;;
    esac
    bytes=$(du -sb "$dir/$path" | cut -f1)
    work="$bench/work"; rm -rf "$work"; mkdir -p "$work"
    log "serve: $corpus ($(( bytes >> 20 )) MiB)"
    start_serve "$work/serve-home"
    env_=$(job_env)
    save_n=0
    measure_alt \
      "save_n=\$((save_n + 1)); export save_n" "cd '$dir' && env $env_ node '$client' save bench-\$save_n '$path'" \
      "rm -rf '$work/home'" "cd '$dir' && RUNCACHE_HOME='$work/home' exec '$rc' -q save --repository bench/bench --key bench --path '$path'" \
      "rm -f '$work/f.tzst'" "tar -cf - -C '$dir' '$path' | zstd -q -T0 -3 -o '$work/f.tzst'" \
      > "$bench/.saves"
    { read -r client_save; read -r rc_save; read -r base_save; } < "$bench/.saves"
    # Every client save must have landed (a failed save only warns).
    mkdir -p "$work/check" && (cd "$work/check" && eval "env $env_ node '$client' restore bench-1 '$path'") > "$sv/check.out"
    grep -q '"matchedKey":"bench-1"' "$sv/check.out" || { echo "the client's save did not land:" >&2; cat "$sv/check.out" "$sv/serve.err" >&2; exit 1; }
    cmp -s "$work/check/$path/$(ls "$dir/$path")" "$dir/$path/$(ls "$dir/$path")" || { echo "the client restored other bytes" >&2; exit 1; }
    rm -rf "$work/check"
    measure_alt \
      "rm -rf '$work/ws' '$work/out' && mkdir -p '$work/ws'" "cd '$work/ws' && env $env_ node '$client' restore bench-1 '$path'" \
      "rm -rf '$work/ws' '$work/out' && mkdir -p '$work/ws'" "cd '$work/ws' && RUNCACHE_HOME='$work/home' exec '$rc' -q restore --repository bench/bench --fail-on-cache-miss --key bench --path '$path'" \
      "rm -rf '$work/ws' '$work/out' && mkdir -p '$work/out'" "zstd -q -d -T0 -c '$work/f.tzst' | tar -xf - -C '$work/out'" \
      > "$bench/.restores"
    { read -r client_restore; read -r rc_restore; read -r base_restore; } < "$bench/.restores"
    stop_serve
    rm -rf "$work"
    rows+=("| $what, $(( bytes >> 20 )) MiB | ${client_save% *} s | ${rc_save% *} s | ${base_save% *} s | **$(ratio "${client_save% *}" "${rc_save% *}")** | ${client_restore% *} s | ${rc_restore% *} s | ${base_restore% *} s | **$(ratio "${client_restore% *}" "${rc_restore% *}")** |")
  done
  # Peak RSS of serve: 8 clients at once, each saving then restoring its
  # own incompressible file, at two sizes (it should not grow with them).
  rss_rows=()
  for each_mb in $(( size_mb / 4 )) "$size_mb"; do
    work="$bench/work"; rm -rf "$work"; mkdir -p "$work"
    log "serve: 8 clients x $each_mb MiB at once"
    for i in $(seq 1 8); do
      mkdir -p "$work/job$i/data"
      head -c "$(( each_mb << 20 ))" "$random/data/random.bin" > "$work/job$i/data/part.bin"
      # Distinct bytes per job: one 8-byte stamp at the start.
      printf '%08d' "$i" | dd of="$work/job$i/data/part.bin" conv=notrunc status=none
    done
    start_serve "$work/serve-home"
    env_=$(job_env)
    start=$(date +%s.%N)
    for i in $(seq 1 8); do (cd "$work/job$i" && eval "env $env_ node '$client' save job-$i data" > "$work/save$i.out") & done
    wait_jobs() { for p in $(jobs -p); do [ "$p" = "$serve_pid" ] || wait "$p"; done; }
    wait_jobs
    saved_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
    for i in $(seq 1 8); do grep -q '"cacheId":[1-9]' "$work/save$i.out" || { echo "job $i's save failed:" >&2; cat "$work/save$i.out" >&2; exit 1; }; rm -rf "$work/job$i/data"; done
    start=$(date +%s.%N)
    for i in $(seq 1 8); do (cd "$work/job$i" && eval "env $env_ node '$client' restore job-$i data" > "$work/restore$i.out") & done
    wait_jobs
    restored_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
    for i in $(seq 1 8); do grep -q "\"matchedKey\":\"job-$i\"" "$work/restore$i.out" || { echo "job $i's restore failed" >&2; cat "$work/restore$i.out" >&2; exit 1; }; done
    peak_kib=$(awk '/^VmHWM/{print $2}' "/proc/$serve_pid/status")
    stop_serve
    rm -rf "$work"
    rss_rows+=("| 8 × $each_mb MiB | ${saved_s} s | ${restored_s} s | **$(mib "$peak_kib")** |")
  done
  {
    echo "| cache | save: client via serve | save: \`runcache save\` | save: tar\|zstd | save ratio client via serve / runcache save | restore: client via serve | restore: \`runcache restore\` | restore: zstd\|tar | restore ratio client via serve / runcache restore |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "| 8 clients at once, each | all saves done | all restores done | peak RSS of \`runcache serve\` (VmHWM) |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rss_rows[@]}"
  } > "$out/serve.md"
fi

if wants build_cache; then
  # The build tools' remote caches: wrk against serve and nginx, and
  # ccache's clean second build (benches/build_cache.sh says what).
  log "build_cache: wrk against runcache serve and nginx, then ccache"
  bash "$root/benches/build_cache.sh" "$rc" "$bench/build_cache" > "$out/build_cache.md"
fi

if wants hash; then
  file="$random/data/random.bin"
  bytes=$(stat -c %s "$file")
  cat "$file" > /dev/null  # into the page cache, for every tool alike
  log "hash: $(( bytes >> 20 )) MiB"
  ours=$("$rcb" hash "$file" | cut -d' ' -f1)
  for tool in openssl sha256sum; do
    theirs=$(if [ "$tool" = openssl ]; then openssl dgst -sha256 -r "$file"; else sha256sum "$file"; fi | cut -d' ' -f1)
    [ "$ours" = "$theirs" ] || { echo "hash mismatch: runcache-bench $ours, $tool $theirs" >&2; exit 1; }
  done
  t_rc=$(measure "$rcb" hash "$file")
  t_os=$(measure openssl dgst -sha256 "$file")
  t_ss=$(measure sha256sum "$file")
  {
    echo "| SHA-256 of $(( bytes >> 20 )) MiB (page cache) | time | throughput | ratio to openssl (time) | peak RSS |"
    echo "|---|---|---|---|---|"
    echo "| runcache (\`runcache-bench hash\`: the workers' hashing reader, sha2) | ${t_rc% *} s | $(mbps "$bytes" "${t_rc% *}") MB/s | **$(ratio "${t_rc% *}" "${t_os% *}")** | $(mib "${t_rc#* }") |"
    echo "| \`openssl dgst -sha256\` | ${t_os% *} s | $(mbps "$bytes" "${t_os% *}") MB/s | 1.00 | $(mib "${t_os#* }") |"
    echo "| \`sha256sum\` (GNU coreutils) | ${t_ss% *} s | $(mbps "$bytes" "${t_ss% *}") MB/s | $(ratio "${t_ss% *}" "${t_os% *}") | $(mib "${t_ss#* }") |"
  } > "$out/hash.md"
fi

if wants promote; then
  log "promote: 8 × $(( size_mb / 8 )) MiB, then save-to-visible latency"
  {
    echo "| what | runcache | baseline | ratio (runcache / baseline throughput) | peak RSS (bench process) |"
    echo "|---|---|---|---|---|"
    "$rcb" promote --artifacts 8 --mib "$(( size_mb / 8 ))" --runs "$runs"
    echo
    echo "| what | p50 | p99 | max | peak RSS (bench process) |"
    echo "|---|---|---|---|---|"
    "$rcb" latency --artifacts 1000
  } > "$out/promote.md"
fi

if wants lookup; then
  log "lookup: local, then moto"
  {
    echo "| index | exact hit p50 / p99 | restore key via the base branch p50 / p99 | miss p50 / p99 | peak RSS (bench process) |"
    echo "|---|---|---|---|---|"
    "$rcb" lookup --backend local
    # moto answers a query over hundreds of entries in about a second
    # (Python): fewer lookups keep the run short.
    "$rcb" lookup --backend moto --lookups 300
  } > "$out/lookup.md"
fi

if wants simulate; then
  log "simulate (defaults)"
  "$rcb" simulate > "$out/simulate.md"
fi

# --- results -----------------------------------------------------------------
: > "$results"
sections="$only"
wants save_restore && sections="$sections small_files"
for section in $sections; do
  [ -f "$out/$section.md" ] || continue
  { echo "<!-- $section -->"; cat "$out/$section.md"; echo; } >> "$results"
  if [ "$update_docs" = 1 ]; then
    if grep -q "^<!-- bench:$section -->$" "$doc"; then
      awk -v name="$section" -v file="$out/$section.md" '
        $0 == "<!-- bench:" name " -->" { print; while ((getline l < file) > 0) print l; skip = 1; next }
        $0 == "<!-- /bench:" name " -->" { skip = 0 }
        !skip { print }' "$doc" > "$doc.tmp" && mv "$doc.tmp" "$doc"
    else
      log "docs/benchmarks.md has no <!-- bench:$section --> marker; left alone"
    fi
  fi
done
cat "$results"
log "tables in $results$([ "$update_docs" = 1 ] && echo " and docs/benchmarks.md")"
