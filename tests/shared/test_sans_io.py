"""chat.shared is the sans-IO core: importing it loads no native-code or I/O machinery.

Every module of the package is imported, one after another, in a fresh
interpreter; whatever each import adds to ``sys.modules`` is charged to it.
None of them may pull in a foreign-function layer (``ctypes``, ``cffi``) or
networking and threading (``socket``, ``selectors``, ``select``, ``ssl``,
``threading``): those belong to chat.server and chat.client. msgspec (a
compiled extension, but pure data encoding) is fine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import chat.shared

FORBIDDEN = (
    "ctypes",
    "_ctypes",
    "cffi",
    "_cffi_backend",
    "socket",
    "_socket",
    "selectors",
    "select",
    "ssl",
    "_ssl",
    "threading",
)
NATIVE_SUFFIXES = (".so", ".dylib", ".dll", ".pyd")

_PROBE = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
package = importlib.import_module("chat.shared")
added = {"chat.shared": sorted(set(sys.modules) - before)}
names = sorted(m.name for m in pkgutil.iter_modules(package.__path__, "chat.shared."))
for name in names:
    before = set(sys.modules)
    importlib.import_module(name)
    added[name] = sorted(set(sys.modules) - before)
print(json.dumps(added))
"""


@pytest.fixture(scope="module")
def added_by_module() -> dict[str, list[str]]:
    """{module: the modules its import added}, from a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    added: dict[str, list[str]] = json.loads(result.stdout)
    return added


def test_every_module_of_the_package_is_probed(added_by_module: dict[str, list[str]]) -> None:
    for name in ("connection", "errors", "framing", "messages", "roster", "states"):
        assert f"chat.shared.{name}" in added_by_module


@pytest.mark.parametrize("forbidden", FORBIDDEN)
def test_no_module_imports_native_or_io_machinery(
    added_by_module: dict[str, list[str]], forbidden: str
) -> None:
    culprits = [name for name, added in added_by_module.items() if forbidden in added]
    assert not culprits, f"{forbidden} is imported by {culprits}"


def test_the_cipher_binding_is_not_in_the_core(added_by_module: dict[str, list[str]]) -> None:
    """It moved to chat.server.crypto.cipher: only the server encrypts."""
    assert "chat.shared.cipher" not in added_by_module


def test_no_shared_library_is_installed_in_the_core() -> None:
    """The one-file client bundles chat.shared; libxor must live beside chat.server."""
    found = [
        os.path.join(folder, entry)
        for folder in chat.shared.__path__
        for entry in os.listdir(folder)
        if entry.endswith(NATIVE_SUFFIXES)
    ]
    assert not found
