#!/usr/bin/env bash
# Installs the test requirements into .venv, then runs ruff, lint-imports (the layer contracts in
# pyproject.toml) and pytest (extra arguments go to pytest). All always run; exits non-zero when any
# fails, including a pytest run that collected no tests. pytest runs on TEST_WORKERS processes (default
# 2; each test file stays on one process); TEST_WORKERS=0 runs it in this process alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The first page's screenshot test (tests/test_first_run.py) needs a headless Chromium and skips without
# one; as root on a Debian/Ubuntu machine (CI) it is installed here. Best effort: a failure only skips it.
ensure_chromium() {
    if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then return 0; fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then return 0; fi
    echo "[test] installing chromium for the page screenshot test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 ||
        echo "[test] chromium could not be installed; the screenshot test will be skipped" >&2
}

bash "$ROOT/installer/install.sh" --test
ensure_chromium
cd "$ROOT"
lint_status=0
"$ROOT/.venv/bin/ruff" check . || lint_status=$?
imports_status=0
"$ROOT/.venv/bin/lint-imports" --no-cache || imports_status=$?
test_status=0
workers="${TEST_WORKERS:-2}"
echo "[test] running pytest on $workers workers: about 10 minutes on 2 idle cores (a fresh install adds about 3), longer on a busy machine"
"$ROOT/.venv/bin/python" -m pytest -q -n "$workers" --dist loadfile "$@" || test_status=$?
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
