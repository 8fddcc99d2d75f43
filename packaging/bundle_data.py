"""What both backends put inside the one-file binaries besides Python code.

PyInstaller's spec and the Nuitka build script import this module so that the
two kinds of binary carry the same files at the same places (``program_files``
says which program gets what):

- chat-server only: its two native libraries at ``chat/server/``, where
  ``chat.server.bundled`` looks for them whatever the backend: the cipher
  plugin (``libxor``, loaded by ``chat.server.crypto.cipher``) and libchatdispatch,
  the worker queue and fan-out (``chat.server.core.native``). The client never
  imports those modules, so it carries neither library and no cffi;
- chat-client only: terminfo entries under ``terminfo/`` at the bundle root, where
  ``chat.client.terminal.bundle_root()`` looks (``sys._MEIPASS`` for
  PyInstaller, three folders above ``chat/client/terminal.py`` for Nuitka) and
  appends the folder to ``TERMINFO_DIRS``.

It runs inside the build venv, where the project is installed (not editable),
so the libraries are looked up in that installation (CMake installs both next
to the ``chat.server`` modules).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TERMINFO_LIST = HERE / "terminfo.txt"
TERMINFO_DEST = "terminfo"
PROGRAMS = ("chat-server", "chat-client")
CIPHER_DEST = "chat/server"  # chat.server.crypto.cipher.BUNDLE_SUBDIR
DISPATCH_DEST = "chat/server"  # chat.server.bundled.BUNDLE_SUBDIR, searched by chat.server.core.native
# The server's native libraries, built by CMake: file names per platform.
CIPHER_NAMES = ("libxor.so", "libxor.dylib")
DISPATCH_NAMES = ("libchatdispatch.so", "libchatdispatch.dylib")
# Where ncurses builds look for the compiled database, most specific first.
SYSTEM_TERMINFO_DIRS = (
    "/etc/terminfo",
    "/lib/terminfo",
    "/usr/share/terminfo",
    "/usr/lib/terminfo",
    "/opt/homebrew/opt/ncurses/share/terminfo",
    "/usr/local/opt/ncurses/share/terminfo",
)
# Modules no chat program needs; cffi and npyscreen drag some of them in.
EXCLUDED_MODULES = (
    "setuptools",
    "pkg_resources",
    "distutils",
    "_distutils_hack",
    "unittest",
    "pydoc",
    "pydoc_data",
    "doctest",
    "tkinter",
    "_tkinter",
    "turtle",
    "lib2to3",
    "idlelib",
    "ensurepip",
    "venv",
    "test",
)


class BundleError(RuntimeError):
    """A file that must go into the binary is missing on the build machine."""


def _installed_library(names: tuple[str, ...]) -> Path:
    """Return the first of NAMES installed in the chat.server package of the build venv."""
    spec = importlib.util.find_spec("chat.server")
    if spec is None or not spec.submodule_search_locations:
        raise BundleError("package chat.server is not installed in the build venv")
    for folder in spec.submodule_search_locations:
        for name in names:
            candidate = Path(folder) / name
            if candidate.is_file():
                return candidate
    raise BundleError(f"{names[0]} not found in {list(spec.submodule_search_locations)}")


def cipher_library() -> Path:
    """Return the libxor built by CMake and installed into the build venv."""
    return _installed_library(CIPHER_NAMES)


def dispatch_library() -> Path:
    """Return the libchatdispatch built by CMake and installed into the build venv."""
    return _installed_library(DISPATCH_NAMES)


def server_libraries() -> list[tuple[Path, str]]:
    """The server's native libraries: (installed file, destination folder in the bundle)."""
    return [(cipher_library(), CIPHER_DEST), (dispatch_library(), DISPATCH_DEST)]


def _terminfo_names() -> list[tuple[str, bool]]:
    """Read terminfo.txt: (name, required) pairs."""
    names = []
    for raw in TERMINFO_LIST.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        optional = line.startswith("?")
        names.append((line.lstrip("?"), not optional))
    return names


def _find_terminfo(name: str) -> Path | None:
    """Find a compiled entry in letter (Linux) or hex (macOS) sub-folders."""
    for root in SYSTEM_TERMINFO_DIRS:
        for sub in (name[0], f"{ord(name[0]):x}"):
            candidate = Path(root) / sub / name
            if candidate.is_file():
                return candidate
    return None


def terminfo_files() -> list[tuple[Path, str]]:
    """Return (source file, destination folder in the bundle) per entry.

    The sub-folder keeps the layout of the database the build machine's ncurses
    reads, which is the ncurses that goes into the bundle.
    """
    found = []
    missing = []
    for name, required in _terminfo_names():
        path = _find_terminfo(name)
        if path is None:
            if required:
                missing.append(name)
            continue
        found.append((path.resolve(), f"{TERMINFO_DEST}/{path.parent.name}"))
    if missing:
        raise BundleError(f"terminfo entries missing on this machine: {', '.join(missing)}")
    return found


def program_files(program: str) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Return (binaries, datas) for one program: (source file, destination folder) pairs.

    The native libraries (libxor, libchatdispatch) go into chat-server only;
    terminfo into chat-client only.
    """
    if program == "chat-server":
        return server_libraries(), []
    if program == "chat-client":
        return [], terminfo_files()
    raise ValueError(f"unknown program {program!r}")


def entry_script(program: str) -> Path:
    """Return the tiny script that calls the program's console-script function."""
    return HERE / "entry" / f"{program}.py"


def main() -> int:
    """Print what would be bundled: a check to run in the build venv."""
    for program in PROGRAMS:
        binaries, datas = program_files(program)
        for src, dest in binaries:
            print(f"{program}: binary {src} -> {dest}")
        for src, dest in datas:
            print(f"{program}: data {src} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
