#!/usr/bin/env bash
# libchatdispatch's C tests in their three CTest configurations (README.md beside
# tests/), each in its own build folder under BUILD_ROOT:
#
#   plain   the library as shipped (Release, stripped): unit tests, concurrency
#           test, exported symbols, fuzz driver and regressions (ASan+UBSan)
#   tsan    library and tests under ThreadSanitizer
#   fuzz    library and tests under ASan+UBSan, built by clang, and libFuzzer for
#           CHATDISPATCH_FUZZ_SECONDS (default 20) seconds
#
# usage: native/dispatch/tests/run_all.sh [BUILD_ROOT]   (default: build/native-dispatch)
#
# Where clang or its libFuzzer runtime is missing, the ASan+UBSan configuration
# is built by the default compiler, without libFuzzer, and a warning says so;
# with CI=true that is an error instead (.ci/run installs clang).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${1:-build/native-dispatch}"
FUZZ_SECONDS="${CHATDISPATCH_FUZZ_SECONDS:-20}"
GEN=()
if command -v ninja >/dev/null; then GEN=(-G Ninja); fi

# configure, build and test one configuration: NAME, then cmake options.
run_config() {
    local name=$1 dir="$ROOT/$1" started=$SECONDS
    shift
    mkdir -p "$dir"
    echo "-- libchatdispatch, $name${*:+: $*}"
    if ! cmake -S "$SRC" -B "$dir" ${GEN[@]+"${GEN[@]}"} -DBUILD_TESTING=ON "$@" >"$dir/configure.log" 2>&1 ||
        ! cmake --build "$dir" >"$dir/build.log" 2>&1; then
        local log
        for log in "$dir/configure.log" "$dir/build.log"; do
            if [[ -f "$log" ]]; then cat "$log" >&2; fi
        done
        echo "run_all.sh: configuring or building '$name' failed (logs above)" >&2
        return 1
    fi
    # Warnings are errors of the test code's own standard (-Wall -Wextra, none allowed).
    if grep -q "warning:" "$dir/build.log"; then
        grep -A3 "warning:" "$dir/build.log" >&2
        echo "run_all.sh: compiler warnings in '$name'" >&2
        return 1
    fi
    ctest --test-dir "$dir" --output-on-failure -j2
    echo "-- libchatdispatch, $name: $((SECONDS - started)) s"
}

have_libfuzzer() {
    command -v clang >/dev/null || return 1
    local probe
    probe="$(mktemp -d)"
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(n && d[0]); }' \
        >"$probe/probe.c"
    if clang -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" >/dev/null 2>&1; then
        rm -rf "$probe"
        return 0
    fi
    rm -rf "$probe"
    return 1
}

run_config plain
run_config tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHATDISPATCH_SANITIZE=thread
if have_libfuzzer; then
    run_config fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCHATDISPATCH_SANITIZE=address,undefined -DCHATDISPATCH_LIBFUZZER=ON \
        -DCHATDISPATCH_FUZZ_SECONDS="$FUZZ_SECONDS"
elif [[ "${CI:-}" == true ]]; then
    echo "run_all.sh: clang with libFuzzer is missing (apt-get install clang libclang-rt-dev)" >&2
    exit 1
else
    echo "run_all.sh: warning: no clang with libFuzzer (apt-get install clang libclang-rt-dev):" \
        "ASan+UBSan with the default compiler, no libFuzzer run" >&2
    run_config asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHATDISPATCH_SANITIZE=address,undefined
fi
