"""Python side of the cipher plugin ABI (native/libxor/include/chat_cipher.h).

cffi ABI mode (``ffi.dlopen``) is used on purpose: no compiler is needed at
install time, and any shared library exporting the same three symbols can be
loaded at run time (``chat-server --cipher-lib PATH``) without rebuilding.

Only the server encrypts (its users file), so this module and the library live
in ``chat.server``: the sans-IO core ``chat.shared`` stays free of native code
and the client binary carries no libxor.
"""

from __future__ import annotations

import os

from cffi import FFI

from chat.server import bundled

LIBRARY_FILENAME = "libxor.so"
# Where the library sits inside the package tree and inside one-file bundles:
# next to this module, the one CMake installs to and packaging/bundle_data.py
# copies to. Only chat-server carries it; the client never imports this module.
BUNDLE_SUBDIR = bundled.BUNDLE_SUBDIR
REQUIRED_SYMBOLS = ("cipher_name", "cipher_encrypt", "cipher_decrypt")
MAX_NAME_LEN = 32

_CDEF = """
const char *cipher_name(void);
int cipher_encrypt(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                   uint8_t *out);
int cipher_decrypt(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                   uint8_t *out);
"""

# Declarations only; never mutated after this point, so sharing it between
# threads and Cipher instances is safe.
_ffi = FFI()
_ffi.cdef(_CDEF)
_BYTES = _ffi.typeof("uint8_t[]")  # looked up once: the per-call string parse is measurable

_ERROR_NAMES = {-1: "a required pointer is NULL", -2: "the key is empty"}


class CipherLoadError(Exception):
    """The plugin cannot be used: missing file, not a library, missing symbol."""


class CipherError(Exception):
    """The plugin refused a call (negative return code)."""


def _loader_reason(exc: OSError) -> str:
    """dlerror() text without cffi's repeated prefix and find_library hint, on one line."""
    text = " ".join(str(exc).split())
    text = text.split(". Additionally,", 1)[0]
    if text.startswith("cannot load library ") and "': " in text:
        text = text.split("': ", 1)[1]
    return text.rstrip(".")


class Cipher:
    """One loaded plugin. Holds the dlopen handle so the code stays mapped."""

    name: str
    path: str

    def __init__(self, lib: object, path: str, name: str) -> None:
        self._lib = lib
        self.path = path
        self.name = name

    def __repr__(self) -> str:
        return f"Cipher(name={self.name!r}, path={self.path!r})"

    def encrypt(self, data: bytes, key: bytes) -> bytes:
        return self._call(self._lib.cipher_encrypt, "encrypt", data, key)  # type: ignore[attr-defined]

    def decrypt(self, data: bytes, key: bytes) -> bytes:
        return self._call(self._lib.cipher_decrypt, "decrypt", data, key)  # type: ignore[attr-defined]

    def _call(self, fn: object, what: str, data: bytes, key: bytes) -> bytes:
        # A fresh buffer per call, transformed in place (the ABI allows out == in): nothing
        # mutable is shared between threads, and one record costs one copy in, one out.
        out = bytearray(data)
        buf = _ffi.from_buffer(_BYTES, out)
        rc = fn(buf, len(out), _ffi.from_buffer(_BYTES, key), len(key), buf)  # type: ignore[operator]
        if rc != 0:
            reason = _ERROR_NAMES.get(rc, "unknown error")
            raise CipherError(f"cipher {self.name!r} {what} failed: code {rc} ({reason})")
        return bytes(out)


def library_candidates() -> list[str]:
    """All places searched for the bundled plugin, in order, without repeats."""
    return bundled.candidates(LIBRARY_FILENAME)


def default_library_path() -> str:
    """Path of the bundled libxor.so; CipherLoadError if no candidate exists."""
    found = bundled.find(LIBRARY_FILENAME)
    if found is not None:
        return found
    candidates = library_candidates()
    raise CipherLoadError(
        f"bundled cipher library {LIBRARY_FILENAME} not found "
        f"(searched: {', '.join(candidates)}); reinstall the package or pass --cipher-lib"
    )


def _open(path: str) -> object:
    if not os.path.exists(path):
        raise CipherLoadError(f"cipher library {path}: no such file")
    if not os.path.isfile(path):
        raise CipherLoadError(f"cipher library {path}: not a regular file")
    try:
        return _ffi.dlopen(path)
    except OSError as exc:
        raise CipherLoadError(
            f"cipher library {path}: not a loadable shared library ({_loader_reason(exc)})"
        ) from None


def _check_symbols(lib: object, path: str) -> None:
    for symbol in REQUIRED_SYMBOLS:
        try:
            getattr(lib, symbol)
        except AttributeError:
            raise CipherLoadError(f"cipher library {path}: missing symbol {symbol}") from None


def _read_name(lib: object, path: str) -> str:
    raw = lib.cipher_name()  # type: ignore[attr-defined]
    if raw == _ffi.NULL:
        raise CipherLoadError(f"cipher library {path}: cipher_name() returned NULL")
    name_bytes = _ffi.string(raw, MAX_NAME_LEN + 1)
    if not name_bytes or len(name_bytes) > MAX_NAME_LEN:
        raise CipherLoadError(
            f"cipher library {path}: cipher_name() must be 1..{MAX_NAME_LEN} bytes"
        )
    try:
        name = name_bytes.decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if not name.isprintable() or not name.isascii() or not name:
        raise CipherLoadError(f"cipher library {path}: cipher_name() is not printable ASCII")
    return name


def load_cipher(path: str | None = None) -> Cipher:
    """Load a plugin by path, or the bundled one when path is None."""
    resolved = os.path.abspath(path) if path is not None else default_library_path()
    lib = _open(resolved)
    _check_symbols(lib, resolved)
    return Cipher(lib, resolved, _read_name(lib, resolved))
