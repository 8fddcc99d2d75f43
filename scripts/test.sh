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
# Tests marked `alone` (tests/cluster: propagation between processes through Redis within
# a time, a reshard under traffic) run after the others, in one process, nothing beside.
WORKERS=${PYTEST_WORKERS:-4}
PYTEST=(env -u LINES -u COLUMNS "$VENV/bin/python" -m pytest)
if [ "$WORKERS" = 0 ]; then
    echo "== Python tests (pytest, one process) =="
    exec "${PYTEST[@]}" "$@"
fi
echo "== Python tests (pytest, workers: $WORKERS) =="
parallel=0
"${PYTEST[@]}" -n "$WORKERS" -m "not alone" "$@" || parallel=$?
echo "== Python tests marked alone (pytest, one process) =="
alone=0
"${PYTEST[@]}" -m alone "$@" || alone=$?
# pytest's 5 is "no test selected": fine for one part of a run that selected some.
for rc in "$parallel" "$alone"; do
    if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then
        exit "$rc"
    fi
done
if [ "$parallel" = 5 ] && [ "$alone" = 5 ]; then
    exit 5
fi
exit 0
