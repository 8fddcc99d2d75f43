"""Where the server's native libraries are: beside this package, or inside a one-file build.

Both libraries (the cipher plugin libxor and libchatdispatch) install next to
the `chat.server` modules (CMake's install step) and are copied to
`chat/server/` inside the one-file binaries (packaging/bundle_data.py), so
one search serves both. An editable install splits the package in two
folders, which is why every entry of its `__path__` is searched.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator

#: Where the libraries sit inside the package tree and inside one-file bundles.
BUNDLE_SUBDIR = os.path.join("chat", "server")


def _package_dirs() -> Iterator[str]:
    """Every folder of this package: an editable install splits it in two."""
    package = __package__ or ""
    try:
        entries = list(importlib.import_module(package).__path__) if package else []
    except (ImportError, AttributeError):
        entries = []
    yield from entries
    yield os.path.dirname(os.path.abspath(__file__))


def _frozen_dirs() -> Iterator[str]:
    """Where one-file builds unpack the libraries (PyInstaller, then Nuitka)."""
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        yield os.path.join(meipass, BUNDLE_SUBDIR)
    compiled = globals().get("__compiled__")
    containing = getattr(compiled, "containing_dir", None)
    if containing:
        yield os.path.join(containing, BUNDLE_SUBDIR)
    for anchor in (sys.executable, sys.argv[0] if sys.argv else ""):
        if anchor:
            base = os.path.dirname(os.path.abspath(anchor))
            yield base
            yield os.path.join(base, BUNDLE_SUBDIR)


def candidates(filename: str) -> list[str]:
    """All places searched for a bundled library, in order, without repeats."""
    seen: dict[str, None] = {}
    for folder in (*_package_dirs(), *_frozen_dirs()):
        seen.setdefault(os.path.join(folder, filename), None)
    return list(seen)


def find(filename: str) -> str | None:
    """The first existing candidate, or None."""
    return next((path for path in candidates(filename) if os.path.isfile(path)), None)
