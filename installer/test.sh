#!/usr/bin/env bash
# Installs the test requirements into .venv, then runs ruff and pytest (extra arguments go to pytest).
# Both always run; exits non-zero when either fails, including a pytest run that collected no tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$ROOT/installer/install.sh" --test
cd "$ROOT"
lint_status=0
"$ROOT/.venv/bin/ruff" check . || lint_status=$?
test_status=0
"$ROOT/.venv/bin/python" -m pytest -q "$@" || test_status=$?
if ((test_status == 5)); then
    echo "[test] ERROR: pytest collected no tests" >&2
fi
if ((lint_status != 0)); then
    echo "[test] ERROR: ruff found problems (see above)" >&2
fi
if ((test_status != 0)); then exit "$test_status"; fi
exit "$lint_status"
