#!/usr/bin/env bash
# runcache's main job on the local default backend, on a real directory:
# save a tree under a key, delete it, restore it, and check it is identical.
# Uses the default $RUNCACHE_HOME (~/.cache/runcache) unless you set one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The local backend alone: the AWS SDK is not needed here. A first build
# compiles about 300 crates: roughly 2 minutes on 2 cores (measured
# 1m44s), seconds afterwards. Cargo shows its progress.
echo "building runcache for the local backend (first build: about 2 minutes on 2 cores)..." >&2
cargo build --release -p runcache --no-default-features
bin="$root/target/release/runcache"

work="$(mktemp -d "${TMPDIR:-/tmp}/runcache-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A real tree to cache: this repository's sources.
mkdir -p "$work/project"
cp -a "$root/schemas" "$root/archive" "$work/project/"
cd "$work/project"
key="demo-$(find schemas archive -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"

echo "+ runcache save --key $key --path schemas --path archive" >&2
"$bin" save --key "$key" --path schemas --path archive
cp -a schemas archive "$work/"            # keep a copy to compare
rm -rf schemas archive
echo "+ runcache restore --key $key --path schemas --path archive" >&2
"$bin" restore --key "$key" --path schemas --path archive
diff -r "$work/schemas" schemas && diff -r "$work/archive" archive
echo "restored tree is identical to what was saved" >&2
echo "+ runcache restore --key demo-other --restore-key demo- --path schemas --path archive --lookup-only" >&2
"$bin" restore --key demo-other --restore-key demo- --path schemas --path archive --lookup-only
