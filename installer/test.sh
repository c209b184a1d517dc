#!/usr/bin/env bash
# Installs the test requirements into .venv, then runs ruff, lint-imports (the layer contracts in
# pyproject.toml) and pytest (extra arguments go to pytest). All always run; exits non-zero when any
# fails, including a pytest run that collected no tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$ROOT/installer/install.sh" --test
cd "$ROOT"
lint_status=0
"$ROOT/.venv/bin/ruff" check . || lint_status=$?
imports_status=0
"$ROOT/.venv/bin/lint-imports" --no-cache || imports_status=$?
test_status=0
"$ROOT/.venv/bin/python" -m pytest -q "$@" || test_status=$?
if ((test_status == 5)); then
    echo "[test] ERROR: pytest collected no tests" >&2
fi
if ((lint_status != 0)); then
    echo "[test] ERROR: ruff found problems (see above)" >&2
fi
if ((imports_status != 0)); then
    echo "[test] ERROR: lint-imports found a broken layer contract (see above)" >&2
fi
if ((test_status != 0)); then exit "$test_status"; fi
if ((lint_status != 0)); then exit "$lint_status"; fi
exit "$imports_status"
