#!/usr/bin/env bash
# The build tools' remote caches on `runcache serve` (local backend, the
# release binary), measured the way build tools use them: thousands of small
# requests. Writes two markdown tables to stdout:
#
# 1. wrk (Debian's package) against `runcache serve` and against nginx
#    (Debian's package, the floor: static files, `dav_methods PUT`) on the
#    same objects, loopback: requests/s and p50/p99 latency of GET hits,
#    GET misses and PUTs of new keys, 4 KiB and 256 KiB objects, at
#    concurrency 1, 16 and 64. runcache's GETs are authenticated, scoped
#    and verified against the content hash as they stream; its PUTs are
#    staged, hashed, promoted and indexed before they return.
# 2. ccache (Debian's package) compiling the C sources of zstd (from the
#    cargo registry) with runcache as its only cache: the first build
#    (every object a miss, then stored), a clean second build (fresh local
#    cache, every object from runcache) and plain gcc.
#
#   bash benches/build_cache.sh RUNCACHE_BIN SCRATCH_DIR > table.md
#
# Settings: DURATION seconds per wrk run (default 5), OBJECTS per size
# (default 200), JOBS parallel compiles (default 2).
set -euo pipefail
rc="$(realpath "$1")"
dir="$2"
duration="${DURATION:-5}"
objects="${OBJECTS:-200}"
jobs="${JOBS:-2}"
log() { echo "[bench:build_cache] $*" >&2; }

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v ccache >/dev/null || need_apt+=(ccache)
command -v gcc >/dev/null || need_apt+=(gcc)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

rm -rf "$dir"; mkdir -p "$dir/www" "$dir/home" "$dir/nginx" "$dir/objects"
printf '[[token]]\ntoken = "bench"\nrepository = "bench/bench"\nref = "refs/heads/main"\ntrust = "protected"\n' > "$dir/tokens.toml"

RUNCACHE_HOME="$dir/home" "$rc" serve --listen 127.0.0.1:0 --tokens "$dir/tokens.toml" \
  > "$dir/serve.out" 2> "$dir/serve.err" &
serve_pid=$!
nginx_pid=
cleanup() {
  kill -TERM "$serve_pid" 2>/dev/null || true
  [ -z "$nginx_pid" ] || kill -QUIT "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^listening on //p' "$dir/serve.out")"
[ -n "$url" ] || { echo "runcache serve did not start:" >&2; cat "$dir/serve.err" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# As root, nginx's workers would run as nobody and could not write PUTs.
user_line=$([ "$(id -u)" = 0 ] && echo 'user root;' || true)
cat > "$dir/nginx/nginx.conf" <<EOF
$user_line
worker_processes auto;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_max_body_size 8m;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    root $dir/www;
    location / { dav_methods PUT; create_full_put_path on; }
  }
}
EOF
"$nginx_bin" -c "$dir/nginx/nginx.conf" 2> "$dir/nginx/start.err" &
nginx_pid=$!
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
nginx_url="http://127.0.0.1:$port"

# The objects: random bytes, the same files for both servers.
auth="Authorization: Bearer bench"
log "storing $objects objects of 4 KiB and 256 KiB in both servers"
for size in 4096 262144; do
  mkdir -p "$dir/www/get/$size" "$dir/www/put/$size/1" "$dir/www/put/$size/16" "$dir/www/put/$size/64"
  for i in $(seq 1 "$objects"); do
    f="$dir/objects/$size-$i"
    head -c "$size" /dev/urandom > "$f"
    cp "$f" "$dir/www/get/$size/$i"
    # each upload-file (a PUT) pairs with the next url
    printf 'upload-file = "%s"\nurl = "%s/gradle/get-%s-%s"\noutput = "/dev/null"\n' \
      "$f" "$url" "$size" "$i"
  done > "$dir/curl-$size.cfg"
  curl -sS --fail -H "$auth" -K "$dir/curl-$size.cfg"
done

# wrk scripts: a random stored object; a key never stored; a new key with
# new bytes per PUT.
cat > "$dir/get.lua" <<'EOF'
local prefix, n = os.getenv("PREFIX"), tonumber(os.getenv("OBJECTS"))
request = function() return wrk.format("GET", prefix .. math.random(1, n)) end
EOF
cat > "$dir/put.lua" <<'EOF'
local prefix, size = os.getenv("PREFIX"), tonumber(os.getenv("SIZE"))
local filler = string.rep("b", size - 32)
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local id = string.format("%016x%016x", math.random(0, 2^52), math.random(0, 2^52))
  return wrk.format("PUT", prefix .. id, nil, id .. filler)
end
EOF

# wrk_run LUA BASE_URL PATH_PREFIX CONNECTIONS SIZE [AUTH] -> "rps p50_ms p99_ms errors"
wrk_run() {
  local lua="$1" base="$2" prefix="$3" c="$4" size="$5" hdr="${6:-}"
  local threads=$(( c < 2 ? 1 : 2 ))
  local args=(-t"$threads" -c"$c" -d"${duration}s" --latency -s "$dir/$lua")
  [ -z "$hdr" ] || args+=(-H "$hdr")
  local text
  text=$(PREFIX="$prefix" OBJECTS="$objects" SIZE="$size" wrk "${args[@]}" "$base" 2>&1)
  echo "$text" >> "$dir/wrk.log"
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<< "$text")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$text")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$text")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<< "$text")
  echo "${rps:-0} $(to_ms "${p50:-0ms}") $(to_ms "${p99:-0ms}") ${non2xx:-0}"
}
# wrk prints 812.00us, 1.23ms, 2.01s
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else printf "%s", v }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rps_fmt() { awk -v r="$1" 'BEGIN{ printf "%.0f", r }'; }

# row WHAT SIZE C RUNCACHE_RESULT NGINX_RESULT EXPECT_ERRORS
row() {
  local what="$1" size="$2" c="$3" ours theirs
  read -r r_rps r_p50 r_p99 r_err <<< "$4"
  read -r n_rps n_p50 n_p99 n_err <<< "$5"
  local note=""
  if [ "$6" = no ] && { [ "$r_err" != 0 ] || [ "$n_err" != 0 ]; }; then
    note=" (non-2xx: runcache $r_err, nginx $n_err)"
  fi
  echo "| $what | $size | $c | $(rps_fmt "$r_rps") | $r_p50 / $r_p99 | $(rps_fmt "$n_rps") | $n_p50 / $n_p99 | **$(ratio "$r_rps" "$n_rps")**$note |"
}

echo "| request | object | concurrency | runcache req/s | runcache p50 / p99 (ms) | nginx req/s | nginx p50 / p99 (ms) | runcache / nginx (req/s) |"
echo "|---|---|---|---|---|---|---|---|"
for size in 4096 262144; do
  label="$(( size / 1024 )) KiB"
  for c in 1 16 64; do
    log "GET hits, $label, c=$c"
    ours=$(wrk_run get.lua "$url" "/gradle/get-$size-" "$c" "$size" "$auth")
    theirs=$(wrk_run get.lua "$nginx_url" "/get/$size/" "$c" "$size")
    row "GET hit" "$label" "$c" "$ours" "$theirs" no
  done
done
for c in 1 16 64; do
  log "GET misses, c=$c"
  ours=$(wrk_run get.lua "$url" "/gradle/never-stored-" "$c" 0 "$auth")
  theirs=$(wrk_run get.lua "$nginx_url" "/never-stored/" "$c" 0)
  row "GET miss (404)" "-" "$c" "$ours" "$theirs" yes
done
for size in 4096 262144; do
  label="$(( size / 1024 )) KiB"
  for c in 1 16 64; do
    log "PUTs of new keys, $label, c=$c"
    ours=$(wrk_run put.lua "$url" "/gradle/put-$size-$c-" "$c" "$size" "$auth")
    theirs=$(wrk_run put.lua "$nginx_url" "/put/$size/$c/" "$c" "$size")
    row "PUT new key" "$label" "$c" "$ours" "$theirs" no
  done
done

# --- ccache: a clean second build against the first ---------------------------
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 3 -type d -path '*zstd-sys-*/zstd' 2>/dev/null | sort | tail -1)
if [ -z "$src" ]; then
  log "no zstd-sys sources in the cargo registry: ccache part skipped (run cargo build first)"
  exit 0
fi
mapfile -t sources < <(cd "$src/lib" && find common compress decompress -name '*.c' | sort)
log "ccache: ${#sources[@]} C files of $(basename "$(dirname "$src")"), -O2, $jobs at a time"
# build NAME [ccache]: compiles every source into $dir/build-NAME; prints seconds
build() {
  local name="$1" wrapper="${2:-}" out="$dir/build-$1" t0 t1
  rm -rf "$out"; mkdir -p "$out"
  t0=$(date +%s.%N)
  printf '%s\n' "${sources[@]}" | (cd "$src/lib" && xargs -P "$jobs" -I{} sh -c \
    "$wrapper gcc -O2 -c {} -o '$out'/\$(echo {} | tr / _).o")
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{ printf "%.2f", b - a }'
}
export CCACHE_REMOTE_STORAGE="$url/ccache|bearer-token=bench" CCACHE_REMOTE_ONLY=true
plain=$(build plain)
first=$(CCACHE_DIR="$dir/ccache-1" build first ccache)
second=$(CCACHE_DIR="$dir/ccache-2" build second ccache)
hits=$(CCACHE_DIR="$dir/ccache-2" ccache --print-stats | awk -F'\t' '$1 == "remote_storage_hit" {print $2}')
echo
echo "| ccache, ${#sources[@]} C files of zstd (-O2, $jobs jobs), runcache as the only cache | time | |"
echo "|---|---|---|"
echo "| plain gcc | ${plain} s | |"
echo "| first build through ccache (every object a miss, then stored in runcache) | ${first} s | $(ratio "$first" "$plain") × plain gcc |"
echo "| clean second build (fresh local cache: ${hits:-0} of ${#sources[@]} objects from runcache) | ${second} s | **$(ratio "$first" "$second") × faster** than the first |"
