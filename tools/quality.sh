#!/usr/bin/env bash
# Quality gates: ruff lint, ruff format check, mypy on src/, strict docs build. Rules live in pyproject.toml.
#
#   tools/quality.sh          run every gate, print a summary, exit 1 if any failed
#   tools/quality.sh --stats  the same, with ruff's per-rule counts
#   tools/quality.sh --fix    apply ruff's safe fixes and the formatter first (rewrites files), then check
#
# Needs the dev extra: pip install -e ".[dev]".
set -uo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # document/check this checkout, not another install
export NO_MKDOCS_2_WARNING=1
failed=()

run() {  # run NAME CMD...: run a gate, remember its failure
    local name="$1"; shift
    echo "==> $name: $*"
    if "$@"; then echo "    $name: ok"; else echo "    $name: FAILED"; failed+=("$name"); fi
}

if [[ "$mode" == "--fix" ]]; then
    ruff check --fix src tests docs/hooks.py || true
    ruff format src tests docs/hooks.py
fi

if [[ "$mode" == "--stats" ]]; then
    run "ruff check" ruff check --statistics src tests docs/hooks.py
else
    run "ruff check" ruff check src tests docs/hooks.py
fi
run "ruff format" ruff format --check --output-format concise src tests docs/hooks.py
run "mypy" mypy
site="$(mktemp -d)"
run "mkdocs" mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"

if ((${#failed[@]})); then
    echo "quality gates failed: ${failed[*]}"
    exit 1
fi
echo "quality gates passed"
