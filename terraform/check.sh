#!/usr/bin/env bash
# Static checks of terraform/, for CI: `bash terraform/check.sh` from any cwd.
#
#   1. terraform fmt -check -recursive terraform/
#   2. policy templates: only ${name} placeholders, each listed in
#      policies/example-values.json, and valid JSON after plain substitution
#      (the rule the Rust IAM test relies on; see policies/README.md)
#   3. checkov static security scan of the module and its example, plus the
#      rendered policy documents (checkov cannot see through templatefile(),
#      so step 2 writes them out as plain aws_iam_policy resources)
#
# Never runs terraform init/validate/plan: no provider registry is reachable.
# Exits non-zero if any step fails, after running them all, and says which.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
checkov_version="${CHECKOV_VERSION:-3.3.30}"
failed=()
rendered="$(mktemp -d "${TMPDIR:-/tmp}/runcache-tf-check.XXXXXX")"
trap 'rm -rf "$rendered"' EXIT

step() { printf '\n== %s\n' "$*"; }

# --- 1. formatting -------------------------------------------------------------
step "terraform fmt -check -recursive terraform/"
if ! command -v terraform >/dev/null 2>&1; then
  echo "terraform is not on PATH" >&2
  failed+=("terraform fmt (terraform missing)")
elif ! (
  cd "$root" || exit 1
  # A TF_CLI_CONFIG_FILE naming a missing file only adds a warning box to
  # the output; fmt needs no CLI configuration at all.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then
    unset TF_CLI_CONFIG_FILE
  fi
  terraform fmt -check -recursive -diff terraform/
); then
  echo "files above need 'terraform fmt -recursive terraform/'" >&2
  failed+=("terraform fmt")
else
  echo "ok"
fi

# --- 2. policy templates --------------------------------------------------------
step "policy templates render to valid JSON with plain \${name} substitution"
if ! python3 - "$here/policies" "$rendered" <<'PY'; then
import json, pathlib, re, sys

d = pathlib.Path(sys.argv[1])
out = pathlib.Path(sys.argv[2])
values = json.loads((d / "example-values.json").read_text())
placeholder = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
bad = False
for t in sorted(d.glob("*.json.tftpl")):
    text = t.read_text()
    problems = []
    if "%{" in text:
        problems.append("template directive %{ ... } (not allowed)")
    if "$${" in text:
        problems.append("escaped $${ (not allowed)")
    leftover = placeholder.sub("", text)
    if "${" in leftover:
        problems.append("a ${...} that is not a plain ${name} placeholder")
    missing = sorted({m for m in placeholder.findall(text) if m not in values})
    if missing:
        problems.append("placeholders missing from example-values.json: " + ", ".join(missing))
    if not problems:
        try:
            doc = json.loads(placeholder.sub(lambda m: values[m.group(1)], text))
            if doc.get("Version") != "2012-10-17" or not doc.get("Statement"):
                problems.append("not an IAM policy document (Version/Statement)")
        except json.JSONDecodeError as e:
            problems.append(f"invalid JSON after substitution: {e}")
    for p in problems:
        print(f"{t.name}: {p}", file=sys.stderr)
        bad = True
    if not problems:
        print(f"{t.name}: ok ({', '.join(sorted(set(placeholder.findall(text))))})")
        name = t.name.split(".")[0]
        (out / f"{name}.tf").write_text(
            f'resource "aws_iam_policy" "{name}" {{\n'
            f'  name   = "rendered-{name}"\n'
            f'  policy = jsonencode({json.dumps(doc)})\n'
            "}\n"
        )
sys.exit(1 if bad else 0)
PY
  failed+=("policy templates")
fi

# --- 3. checkov -----------------------------------------------------------------
step "checkov (terraform framework)"
checkov_cmd=()
if command -v checkov >/dev/null 2>&1; then
  checkov_cmd=(checkov)
else
  echo "checkov not found; installing checkov==$checkov_version from PyPI"
  if python3 -m pip install --quiet "checkov==$checkov_version"; then
    hash -r
    if command -v checkov >/dev/null 2>&1; then
      checkov_cmd=(checkov)
    else
      checkov_cmd=(python3 -m checkov.main)
    fi
  fi
fi

if [ ${#checkov_cmd[@]} -eq 0 ]; then
  echo "could not install checkov" >&2
  failed+=("checkov (not installed)")
else
  have="$("${checkov_cmd[@]}" --version 2>/dev/null | tail -n1)"
  if [ "$have" != "$checkov_version" ]; then
    echo "note: checkov $have here, checks were tuned on $checkov_version (new checks may appear)"
  fi
  # --skip-download and CKV_SKIP_PACKAGE_UPDATE_CHECK: no calls to Prisma
  # Cloud or PyPI during the scan (the network reaches package registries
  # only, and results must not depend on it). --quiet --compact: print
  # failed checks only, without code.
  run_checkov() {
    (cd "$1" && BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true "${checkov_cmd[@]}" \
      --directory . \
      --framework terraform \
      --skip-download \
      --quiet --compact \
      --output cli)
  }
  echo "-- module and examples ($here)"
  run_checkov "$here" || failed+=("checkov (module)")
  if compgen -G "$rendered/*.tf" >/dev/null; then
    echo "-- rendered policy templates"
    run_checkov "$rendered" || failed+=("checkov (policy templates)")
  fi
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'terraform/check.sh: FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
echo "terraform/check.sh: all checks passed"
