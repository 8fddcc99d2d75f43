#!/usr/bin/env bash
# The test command: install the project (C library included) into .venv, then run
# the C tests (ctest) and the Python tests (pytest). Extra arguments go to pytest.
# EXTRAS=test,release also installs PyInstaller, which opts in the release tests.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS:-test}]"

# The C tests need cmake and ninja; take them from PyPI when the system has none.
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    "$VENV/bin/python" -m pip install -q cmake ninja
    export PATH="$PWD/$VENV/bin:$PATH"
fi

echo "== C tests (ctest) =="
cmake -S native/libxor -B build/native -G Ninja -DBUILD_TESTING=ON >/dev/null
cmake --build build/native >/dev/null
ctest --test-dir build/native --output-on-failure

# libchatdispatch: plain, ThreadSanitizer, and ASan+UBSan with a 20 s libFuzzer run
# (about 36 s on two cores; native/dispatch/README.md). CI=true requires clang.
echo "== C tests: libchatdispatch (ctest: plain, ThreadSanitizer, ASan+UBSan, libFuzzer) =="
bash native/dispatch/tests/run_all.sh build/native-dispatch

echo "== lint (ruff) =="
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench

# Most tests wait on real servers, terminals and timeouts rather than compute: they run
# in four pytest-xdist workers by default (about 8 min instead of 25 on a 2-core machine;
# the release build is made once for all: tests/packaging/conftest.py). PYTEST_WORKERS=0
# runs them in one process (as before), PYTEST_WORKERS=N in N workers.
echo "== Python tests (pytest, workers: ${PYTEST_WORKERS:-4}) =="
exec env -u LINES -u COLUMNS "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-4}" "$@"
