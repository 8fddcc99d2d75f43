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

# Most tests wait on real servers, terminals and timeouts rather than compute: four
# workers (pytest-xdist) take about a third of the serial time even on two cores (the
# release build is made once for all of them: tests/packaging/conftest.py).
# PYTEST_WORKERS=0 runs everything in this process.
echo "== Python tests (pytest, ${PYTEST_WORKERS:-4} workers) =="
exec env -u LINES -u COLUMNS "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-4}" "$@"
