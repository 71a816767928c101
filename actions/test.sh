#!/usr/bin/env bash
# Tests the bash in actions/*/action.yml: runs each composite step's `run:`
# script the way the runner does (`bash --noprofile --norc -eo pipefail`,
# env from the step's `env:` block with `${{ inputs.* }}` and
# `${{ steps.*.outputs.* }}` evaluated, input defaults applied, step outputs
# read back from $GITHUB_OUTPUT) against a stub `runcache` that records its
# argv, and checks the argv and outputs. At the end it runs the JavaScript
# action's test, actions/cache/test.mjs, against the real runcache binary
# ($RUNCACHE_BIN, else target/debug/runcache: `cargo build -p runcache`).
#
#   bash actions/test.sh
#
# Needs bash 4+ and awk; node 20+ and the runcache binary for actions/cache.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
current=""
fail() {
  echo "  FAIL [$current]: $*" >&2
  failed=$((failed + 1))
}

# --- reading an action.yml ------------------------------------------------
# The files are ours and keep one layout (2-space indents, steps under
# `runs.steps`, `run: |` blocks); anything else is reported, not guessed.

# extract ACTION DIR: DIR/N.id, N.shell, N.env (NAME<TAB>EXPR), N.sh per
# step; DIR/inputs (NAME<TAB>DEFAULT), DIR/outputs (NAME<TAB>EXPR).
extract() {
  local action=$1 dir=$2
  mkdir -p "$dir"
  awk -v out="$dir" '
    function val(s) { sub(/^[^:]*:[[:space:]]*/, "", s); gsub(/^'\''|'\''$/, "", s); return s }
    /^[a-z]/ { section = $0; sub(/:.*/, "", section); mode = ""; }
    section == "inputs" && /^  [A-Za-z][A-Za-z0-9_-]*:[[:space:]]*$/ {
      name = $0; gsub(/[[:space:]:]/, "", name); printf "%s\t\n", name >> (out "/inputs.raw"); next }
    section == "inputs" && /^    default:/ { printf "%s\t%s\n", name, val($0) >> (out "/inputs.raw"); next }
    section == "outputs" && /^  [A-Za-z][A-Za-z0-9_-]*:[[:space:]]*$/ { name = $0; gsub(/[[:space:]:]/, "", name); next }
    section == "outputs" && /^    value:/ { printf "%s\t%s\n", name, val($0) > (out "/outputs"); next }
    section != "runs" { next }
    /^    - / { n++; mode = ""; sub(/^    - /, "      ") }
    !n { next }
    mode == "run" {
      if ($0 ~ /^        / || $0 ~ /^[[:space:]]*$/) { line = $0; sub(/^        /, "", line); print line > (out "/" n ".sh"); next }
      mode = ""
    }
    mode == "env" {
      if ($0 ~ /^        [A-Za-z_][A-Za-z0-9_]*: /) {
        line = $0; sub(/^        /, "", line); name = line; sub(/:.*/, "", name)
        printf "%s\t%s\n", name, val(line) > (out "/" n ".env"); next }
      mode = ""
    }
    /^      id: / { print val($0) > (out "/" n ".id"); next }
    /^      shell: / { print val($0) > (out "/" n ".shell"); next }
    /^      env:[[:space:]]*$/ { mode = "env"; printf "" > (out "/" n ".env"); next }
    /^      run: \|[[:space:]]*$/ { mode = "run"; printf "" > (out "/" n ".sh"); next }
    /^      [a-z-]+:/ { print "unsupported step key: " $0 > "/dev/stderr"; bad = 1 }
    END { print n + 0 > (out "/steps"); exit bad }
  ' "$action"
  # Last default wins per input (the name line gives an empty one first).
  awk -F '\t' '{ d[$1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
    END { for (i = 1; i <= k; i++) printf "%s\t%s\n", order[i], d[order[i]] }' \
    "$dir/inputs.raw" > "$dir/inputs"
}

declare -A IN=()       # the inputs of the case being run
declare -A DEFAULTS=() # the action's input defaults
declare -A STEP_OUT=() # "step-id.name" → value
declare -A OUT=()      # the action's outputs
EXPR_VALUE=""

# Evaluates the expressions the actions use; anything else is an error so
# a new kind of expression gets a harness change, not a silent pass.
eval_expr() {
  local expr=$1
  local re_input='^\$\{\{ inputs\.([A-Za-z0-9_-]+) \}\}$'
  local re_step='^\$\{\{ steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+) \}\}$'
  if [[ $expr =~ $re_input ]]; then
    local name=${BASH_REMATCH[1]}
    if [[ -z ${DEFAULTS[$name]+x} ]]; then
      fail "the action uses undeclared input '$name'"
      EXPR_VALUE=""
    elif [[ -n ${IN[$name]+x} ]]; then
      EXPR_VALUE=${IN[$name]}
    else
      EXPR_VALUE=${DEFAULTS[$name]}
    fi
  elif [[ $expr =~ $re_step ]]; then
    EXPR_VALUE=${STEP_OUT[${BASH_REMATCH[1]}.${BASH_REMATCH[2]}]-}
  else
    fail "unsupported expression: $expr"
    EXPR_VALUE=""
  fi
}

# read_outputs FILE ID: name=value and name<<DELIM…DELIM lines.
read_outputs() {
  local file=$1 id=$2 line name delim value
  [[ -f $file ]] || return 0
  while IFS= read -r line; do
    if [[ $line == *'<<'* && $line != *=* ]]; then
      name=${line%%<<*}
      delim=${line#*<<}
      value=""
      while IFS= read -r line && [[ $line != "$delim" ]]; do
        value+="${value:+$'\n'}$line"
      done
      STEP_OUT[$id.$name]=$value
    elif [[ $line == *=* ]]; then
      STEP_OUT[$id.${line%%=*}]=${line#*=}
    fi
  done < "$file"
}

STUB_ENV=() # extra NAME=VALUE for the steps (stub behaviour, RUNCACHE_*)
LOG=""      # stdout+stderr of the last action run
RC=0        # its exit status

# run_action NAME: runs every step of actions/NAME in order, in a fresh
# working directory, as the runner would; stops at the first failing step.
run_action() {
  local name=$1 dir="$work/extracted/$1"
  local case_dir="$work/case"
  rm -rf "$case_dir" "$work/runner"
  mkdir -p "$case_dir" "$work/runner/temp" "$work/runner/tool-cache"
  # Files a stray glob or word split would expand to.
  mkdir -p "$case_dir/my dir" && touch "$case_dir/a.txt" "$case_dir/b.txt" "$case_dir/my dir/x.txt"
  : > "$work/runner/github_path"
  : > "$work/argv"
  DEFAULTS=()
  local input default
  while IFS=$'\t' read -r input default; do DEFAULTS[$input]=$default; done < "$dir/inputs"
  for input in "${!IN[@]}"; do
    [[ -n ${DEFAULTS[$input]+x} ]] || fail "case passes unknown input '$input'"
  done
  STEP_OUT=()
  OUT=()
  LOG=""
  RC=0
  local n step env_name expr out
  n=$(cat "$dir/steps")
  for ((step = 1; step <= n; step++)); do
    [[ $(cat "$dir/$step.shell") == bash ]] || fail "step $step: shell is not bash"
    local envs=(
      "PATH=$work/bin:$BASE_PATH" "HOME=$work/home" "LANG=C.UTF-8"
      "GITHUB_OUTPUT=$work/runner/output-$step" "GITHUB_PATH=$work/runner/github_path"
      "RUNNER_TEMP=$work/runner/temp" "RUNNER_TOOL_CACHE=$work/runner/tool-cache"
      "STUB_LOG=$work/argv" ${STUB_ENV[@]+"${STUB_ENV[@]}"}
    )
    if [[ -f $dir/$step.env ]]; then
      while IFS=$'\t' read -r env_name expr; do
        eval_expr "$expr"
        envs+=("$env_name=$EXPR_VALUE")
      done < "$dir/$step.env"
    fi
    : > "$work/runner/output-$step"
    out=$(cd "$case_dir" && env -i "${envs[@]}" bash --noprofile --norc -eo pipefail "$dir/$step.sh" 2>&1) || RC=$?
    LOG+="$out"$'\n'
    read_outputs "$work/runner/output-$step" "$(cat "$dir/$step.id")"
    [[ $RC -eq 0 ]] || break
  done
  if [[ -f $dir/outputs ]]; then
    while IFS=$'\t' read -r input expr; do
      eval_expr "$expr"
      OUT[$input]=$EXPR_VALUE
    done < "$dir/outputs"
  fi
  if [[ -e $case_dir/pwned || -e $case_dir/pwned2 ]]; then fail "an input was executed as shell"; fi
}

# --- checks -----------------------------------------------------------------

expect_argv() {
  local got=()
  if [[ -s $work/argv ]]; then mapfile -d '' -t got < "$work/argv"; fi
  if [[ "${got[*]-}" != "$*" || ${#got[@]} -ne $# ]]; then
    fail "argv differs"
    echo "    expected ($#):" >&2
    printf '      [%s]\n' "$@" >&2
    echo "    got (${#got[@]}):" >&2
    printf '      [%s]\n' ${got[@]+"${got[@]}"} >&2
    echo "    log: $LOG" >&2
    return
  fi
  local i expected=("$@")
  for i in "${!expected[@]}"; do
    [[ ${got[$i]} == "${expected[$i]}" ]] || fail "argv[$i]: expected [${expected[$i]}], got [${got[$i]}]"
  done
}
expect_no_call() { [[ ! -s $work/argv ]] || fail "runcache was called: $(tr '\0' ' ' < "$work/argv")"; }
expect_rc() { [[ $RC -eq $1 ]] || fail "exit status $RC, expected $1; log: $LOG"; }
expect_rc_nonzero() { [[ $RC -ne 0 ]] || fail "succeeded, expected a failure; log: $LOG"; }
expect_log() { [[ $LOG == *"$1"* ]] || fail "log lacks [$1]; log: $LOG"; }
expect_out() { [[ ${OUT[$1]-<unset>} == "$2" ]] || fail "output $1 = [${OUT[$1]-<unset>}], expected [$2]"; }

case_() {
  current=$1
  IN=()
  STUB_ENV=()
  echo "- $1"
}

# --- the stub runcache ---------------------------------------------------------

BASE_PATH=$PATH
mkdir -p "$work/bin" "$work/home" "$work/other bin"
cat > "$work/bin/runcache" <<'STUB'
#!/usr/bin/env bash
# Stub runcache: records argv NUL-separated, plays restore's outputs.
if [[ ${1-} == --version ]]; then echo "runcache ${STUB_VERSION:-0.1.0}"; exit 0; fi
printf '%s\0' "$@" > "$STUB_LOG"
printf 'stub %s\n' "${STUB_NAME:-runcache}"
if [[ ${1-} == restore ]]; then
  {
    echo "cache-hit=${STUB_HIT-true}"
    echo "cache-primary-key=$3"
    echo "cache-matched-key=${STUB_MATCHED-$3}"
  } >> "$GITHUB_OUTPUT"
fi
exit "${STUB_EXIT:-0}"
STUB
chmod +x "$work/bin/runcache"
cp "$work/bin/runcache" "$work/other bin/runcache"
# Stub cargo: `cargo install --locked --root ROOT …` installs a stub runcache.
mkdir -p "$work/cargo-bin"
cat > "$work/cargo-bin/cargo" <<'STUB'
#!/usr/bin/env bash
printf '%s\0' "$@" > "$STUB_LOG.cargo"
root=$4
mkdir -p "$root/bin"
sed 's/STUB_NAME:-runcache/STUB_NAME:-installed/' "$(dirname "$0")/../bin/runcache" > "$root/bin/runcache"
chmod +x "$root/bin/runcache"
STUB
chmod +x "$work/cargo-bin/cargo"

for action in restore-cache save-cache; do
  extract "$here/$action/action.yml" "$work/extracted/$action"
done

# Where a YAML parser is at hand, it must read the same scripts, env and
# defaults as the extractor above (the runs below do not depend on it).
if python3 -c 'import yaml' 2>/dev/null; then
  current="YAML cross-check"
  echo "- $current"
  python3 - "$here" "$work/extracted" <<'PY' || fail "a YAML parser reads the actions differently"
import sys, yaml, pathlib
here, extracted = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ok = True
for action in ["restore-cache", "save-cache"]:
    doc = yaml.safe_load((here / action / "action.yml").read_text())
    out = extracted / action
    inputs = dict(line.split("\t", 1) for line in (out / "inputs").read_text().splitlines())
    want = {k: str(v.get("default", "")) for k, v in doc["inputs"].items()}
    if inputs != want:
        ok = False; print(action, "inputs", inputs, want)
    for n, step in enumerate(doc["runs"]["steps"], 1):
        script = (out / f"{n}.sh").read_text()
        if script.rstrip("\n") != step["run"].rstrip("\n"):
            ok = False; print(action, "step", n, "script differs")
        env = dict(line.split("\t", 1) for line in (out / f"{n}.env").read_text().splitlines())
        if env != {k: str(v) for k, v in step.get("env", {}).items()}:
            ok = False; print(action, "step", n, "env differs")
doc = yaml.safe_load((here / "cache" / "action.yml").read_text())
if doc["runs"] != {"using": "node20", "main": "main.js", "post": "post.js", "post-if": "success()"}:
    ok = False; print("cache runs", doc["runs"])
sys.exit(0 if ok else 1)
PY
fi

# --- restore-cache -------------------------------------------------------------

case_ "restore: multi-line path and restore-keys with spaces, globs, excludes, blanks"
IN[key]="  npm-Linux-abc 1  "
IN[path]=$'\n  my dir/with spaces  \n**/*.txt\n\n!**/keep me.txt\n!   excluded dir\r\n~/.npm\n$HOME/literal\n$(touch pwned)\n`touch pwned2`; rm -rf *\n\t\n'
IN[restore-keys]=$'npm-Linux-\n\n   \nnpm-\n'
IN[lookup-only]=true
IN[trust]=protected
run_action restore-cache
expect_rc 0
expect_argv restore --key "npm-Linux-abc 1" \
  --restore-key npm-Linux- --restore-key npm- \
  --path "my dir/with spaces" --path "**/*.txt" --path "!**/keep me.txt" \
  --path "!excluded dir" --path "~/.npm" --path '$HOME/literal' \
  --path '$(touch pwned)' --path '`touch pwned2`; rm -rf *' \
  --lookup-only --trust protected
expect_out cache-hit true
expect_out cache-primary-key "npm-Linux-abc 1"
expect_out cache-matched-key "npm-Linux-abc 1"
[[ -e $work/case/a.txt ]] || fail "a glob in an input deleted files"

case_ "restore: defaults give the plain command; a miss gives empty outputs"
IN[key]=k
IN[path]=node_modules
STUB_ENV=(STUB_HIT= STUB_MATCHED=)
run_action restore-cache
expect_rc 0
expect_argv restore --key k --path node_modules
expect_out cache-hit ""
expect_out cache-primary-key k
expect_out cache-matched-key ""

case_ "restore: a prefix match"
IN[key]=deps:o/r:Cargo.lock:abc:rustc-1.85.0
IN[path]=target
IN[restore-keys]=deps:o/r:Cargo.lock:
STUB_ENV=(STUB_HIT=false STUB_MATCHED=deps:o/r:Cargo.lock:old:rustc-1.85.0)
run_action restore-cache
expect_argv restore --key deps:o/r:Cargo.lock:abc:rustc-1.85.0 --restore-key deps:o/r:Cargo.lock: --path target
expect_out cache-hit false
expect_out cache-matched-key deps:o/r:Cargo.lock:old:rustc-1.85.0

case_ "restore: fail-on-cache-miss is passed and a miss fails the step"
IN[key]=k
IN[path]=p
IN[fail-on-cache-miss]=True
STUB_ENV=(STUB_HIT= STUB_MATCHED= STUB_EXIT=1)
run_action restore-cache
expect_argv restore --key k --path p --fail-on-cache-miss
expect_rc 1

case_ "restore: a non-boolean is refused before runcache runs"
IN[key]=k
IN[path]=p
IN[lookup-only]=yes
run_action restore-cache
expect_rc_nonzero
expect_no_call
expect_log "Input lookup-only must be true or false"

case_ "restore: key and path are required"
IN[key]=$'  \n'
IN[path]=p
run_action restore-cache
expect_rc_nonzero
expect_no_call
expect_log "key"
IN[key]=k
IN[path]=$'\n  \n\n'
run_action restore-cache
expect_rc_nonzero
expect_no_call
expect_log "not supplied: path"

case_ "restore: enableCrossOsArchive is accepted and ignored with a note"
IN[key]=k
IN[path]=p
IN[enableCrossOsArchive]=true
run_action restore-cache
expect_rc 0
expect_argv restore --key k --path p
expect_log "::notice::enableCrossOsArchive is ignored"

case_ "restore: runcache-path picks the binary"
IN[key]=k
IN[path]=p
IN[runcache-path]="$work/other bin/runcache"
STUB_ENV=(STUB_NAME=other)
run_action restore-cache
expect_argv restore --key k --path p
expect_log "stub other"

case_ "restore: no runcache is a warning and a miss, unless fail-on-cache-miss"
IN[key]=k
IN[path]=p
IN[runcache-path]="$work/nowhere/runcache"
run_action restore-cache
expect_rc 0
expect_log "::warning::runcache not found"
expect_out cache-hit ""
expect_out cache-primary-key k
expect_out cache-matched-key ""
IN[fail-on-cache-miss]=true
run_action restore-cache
expect_rc 1
expect_log "fail-on-cache-miss"

case_ "restore: version: the installed one is used when it matches"
IN[key]=k
IN[path]=p
IN[version]=0.1.0
run_action restore-cache
expect_rc 0
expect_argv restore --key k --path p
[[ ! -e $work/argv.cargo ]] || fail "cargo ran although the version matched"
[[ ! -s $work/runner/github_path ]] || fail "GITHUB_PATH changed"

case_ "restore: version: another one is installed with cargo and used"
IN[key]=k
IN[path]=p
IN[version]=0.2.0
BASE_PATH="$work/cargo-bin:$PATH"
run_action restore-cache
expect_rc 0
expect_argv restore --key k --path p
expect_log "stub installed"
mapfile -d '' -t cargo_argv < "$work/argv.cargo"
[[ "${cargo_argv[*]}" == "install --locked --root $work/runner/tool-cache/runcache/0.2.0 runcache@0.2.0" ]] ||
  fail "cargo argv: ${cargo_argv[*]}"
[[ $(cat "$work/runner/github_path") == "$work/runner/tool-cache/runcache/0.2.0/bin" ]] ||
  fail "GITHUB_PATH: $(cat "$work/runner/github_path")"
rm -f "$work/argv.cargo"
STUB_ENV=(RUNCACHE_INSTALL_GIT=https://git.example.invalid/runcache.git)
run_action restore-cache
mapfile -d '' -t cargo_argv < "$work/argv.cargo"
[[ "${cargo_argv[*]}" == "install --locked --root $work/runner/tool-cache/runcache/0.2.0 --git https://git.example.invalid/runcache.git --tag v0.2.0 runcache" ]] ||
  fail "cargo argv (git): ${cargo_argv[*]}"
rm -f "$work/argv.cargo"
BASE_PATH=$PATH

case_ "restore: version: no cargo is a warning and a miss"
IN[key]=k
IN[path]=p
IN[version]=0.3.0
# No cargo, no runcache other than the stub that reports 0.1.0.
saved_path=$BASE_PATH
BASE_PATH=/usr/bin:/bin
run_action restore-cache
BASE_PATH=$saved_path
expect_rc 0
expect_log "cargo is not available"
expect_log "::warning::runcache not found"
expect_no_call
expect_out cache-hit ""

# --- save-cache ----------------------------------------------------------------

case_ "save: multi-line path with spaces, globs, excludes, blanks"
IN[key]="deps:o/r:package-lock.json:abc:node-20.11.0"
IN[path]=$'node_modules\n\n  ~/.npm/_cacache  \n!node_modules/.cache\n! node_modules/x y\n**/dist/*.js\r\n'
IN[upload-chunk-size]=33554432
run_action save-cache
expect_rc 0
expect_argv save --best-effort --key deps:o/r:package-lock.json:abc:node-20.11.0 \
  --path node_modules --path "~/.npm/_cacache" --path "!node_modules/.cache" \
  --path "!node_modules/x y" --path "**/dist/*.js"
expect_log "::notice::upload-chunk-size is ignored"

case_ "save: a failed save is a warning, not a failed build"
IN[key]=k
IN[path]=p
STUB_ENV=(STUB_EXIT=3)
run_action save-cache
expect_rc 0
expect_argv save --best-effort --key k --path p
expect_log "::warning::runcache save failed (exit 3)"

case_ "save: no runcache is a warning"
IN[key]=k
IN[path]=p
IN[runcache-path]="$work/nowhere/runcache"
run_action save-cache
expect_rc 0
expect_log "::warning::runcache not found"

case_ "save: key and path are required; booleans are checked"
IN[path]=p
run_action save-cache
expect_rc_nonzero
expect_no_call
IN[key]=k
IN[path]=""
run_action save-cache
expect_rc_nonzero
expect_no_call
IN[path]=p
IN[enableCrossOsArchive]=maybe
run_action save-cache
expect_rc_nonzero
expect_no_call

# --- cache (the JavaScript action, against the real runcache) ------------------

case_ "cache: actions/cache/test.mjs (node, the real runcache binary)"
runcache_bin=${RUNCACHE_BIN:-target/debug/runcache}
[[ $runcache_bin == /* ]] || runcache_bin="$here/../$runcache_bin"
if ! command -v node >/dev/null 2>&1; then
  fail "node is not installed; actions/cache/test.mjs needs node 20+"
elif [[ ! -x $runcache_bin ]]; then
  fail "no runcache binary at $runcache_bin: build it first with \`cargo build -p runcache\` (or set RUNCACHE_BIN)"
elif ! RUNCACHE_BIN=$runcache_bin node "$here/cache/test.mjs"; then
  fail "actions/cache/test.mjs failed; see its output above"
fi

echo
if [[ $failed -gt 0 ]]; then
  echo "actions/test.sh: $failed check(s) failed" >&2
  exit 1
fi
echo "actions/test.sh: all checks passed"
