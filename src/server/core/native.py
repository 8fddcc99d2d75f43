"""cffi binding of libchatdispatch (native/dispatch/include/chat_dispatch.h).

ABI mode (`dlopen`), like the cipher plugin: nothing is compiled at install
time beyond the library CMake builds. cffi releases the GIL around every
call, so a worker blocked in `DispatchQueue.pop`, a fan-out to hundreds of
buffers and the send() calls of a flush never stop the other threads.

This module only translates: the rules (limits, order, who may write a
socket) are the library's and are documented in its header.
"""

from __future__ import annotations

import threading
from typing import Any

from cffi import FFI

from chat.server import bundled

LIBRARY_FILENAME = "libchatdispatch.so"

_CDEF = """
typedef struct cd_queue cd_queue;
typedef struct cd_out cd_out;
typedef struct cd_tick cd_tick;
cd_queue *cd_queue_new(void);
void cd_queue_free(cd_queue *q);
int cd_queue_push(cd_queue *q, uint64_t item);
size_t cd_queue_pop(cd_queue *q, uint64_t *items, size_t max, int timeout_ms);
size_t cd_queue_len(cd_queue *q);
cd_out *cd_out_new(uint32_t slots, size_t limit, size_t soft, size_t total_limit);
void cd_out_free(cd_out *o);
int cd_open(cd_out *o, uint32_t slot, int fd, uint32_t flags, uint64_t *handle);
int cd_close(cd_out *o, uint64_t handle);
int cd_set_tag(cd_out *o, uint64_t handle, uint32_t tag);
int cd_append(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data, size_t n);
size_t cd_fanout(cd_out *o, cd_tick *tick, const uint8_t *data, size_t n,
                 const uint64_t *handles, size_t count, uint32_t exclude, uint64_t skip,
                 uint8_t *failed);
int cd_seal(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data, size_t n);
int cd_hold(cd_out *o, uint64_t handle);
int cd_append_first(cd_out *o, cd_tick *tick, uint64_t handle, const uint8_t *data, size_t n);
int cd_release(cd_out *o, cd_tick *tick, uint64_t handle);
size_t cd_pending(cd_out *o, uint64_t handle);
uint32_t cd_state(cd_out *o, uint64_t handle);
uint64_t cd_total(cd_out *o);
uint64_t cd_sent(cd_out *o);
size_t cd_trim(cd_out *o);
uint32_t cd_flush(cd_out *o, uint64_t handle, int *err, size_t *left);
size_t cd_peek(cd_out *o, uint64_t handle, uint8_t *dst, size_t max);
int cd_consume(cd_out *o, uint64_t handle, size_t n);
cd_tick *cd_tick_new(cd_out *o);
void cd_tick_free(cd_tick *t);
size_t cd_tick_flush(cd_out *o, cd_tick *t, uint64_t *handles, uint32_t *statuses,
                     int *errs, size_t max);
"""

ffi = FFI()
ffi.cdef(_CDEF)

# chat_dispatch.h, without the CD_ prefix. The declarations above and these numbers are
# copies of the header: tests/server/test_native_binding.py holds them to it.
OK, DROPPED, OVERFLOW, EINVAL, ENOMEM = 0, 1, 2, -1, -2
DIRECT, SEALED, CLOSED, OVERFLOWED, HOLDING = 1, 2, 4, 8, 16
S_LEFT, S_ERROR, S_SEALED, S_OVERFLOW, S_LOOP = 1, 2, 4, 8, 16
NULL = ffi.NULL


class NativeLoadError(Exception):
    """libchatdispatch cannot be found or loaded; one line."""


_lib: Any = None
_load_lock = threading.Lock()


def lib() -> Any:
    """The loaded library (once per process)."""
    global _lib
    if _lib is None:
        with _load_lock:
            if _lib is None:
                path = bundled.find(LIBRARY_FILENAME)
                if path is None:
                    searched = ", ".join(bundled.candidates(LIBRARY_FILENAME))
                    raise NativeLoadError(
                        f"{LIBRARY_FILENAME} not found (searched: {searched}); "
                        "reinstall the package"
                    )
                try:
                    _lib = ffi.dlopen(path)
                except OSError as exc:
                    reason = " ".join(str(exc).split())
                    raise NativeLoadError(f"{path}: cannot be loaded ({reason})") from None
    return _lib


class DispatchQueue:
    """The worker pool's queue of integers (FIFO, many producers and consumers)."""

    __slots__ = ("_lib", "_q")

    def __init__(self) -> None:
        self._lib = lib()
        q = self._lib.cd_queue_new()
        if q == NULL:
            raise MemoryError("cd_queue_new")
        self._q = ffi.gc(q, self._lib.cd_queue_free)

    def push(self, item: int) -> None:
        if self._lib.cd_queue_push(self._q, item) != OK:
            raise MemoryError("cd_queue_push")

    def pop(self, into: Any, timeout_ms: int = -1) -> int:
        """Fill the cffi array `into` (uint64_t[]) with up to its length of items; how many."""
        return int(self._lib.cd_queue_pop(self._q, into, len(into), timeout_ms))

    def __len__(self) -> int:
        return int(self._lib.cd_queue_len(self._q))


class OutTable:
    """Every connection's outbound bytes (`cd_out`): one slot per connection.

    `open` and `close` come from the loop thread alone (it owns the sockets);
    appends, fan-outs and flushes from any thread.
    """

    __slots__ = ("_lib", "_out", "slots")

    def __init__(self, slots: int, limit: int, soft: int, total_limit: int) -> None:
        self._lib = lib()
        out = self._lib.cd_out_new(slots, limit, soft, total_limit)
        if out == NULL:
            raise MemoryError("cd_out_new")
        self._out = ffi.gc(out, self._lib.cd_out_free)
        self.slots = slots

    @property
    def ptr(self) -> Any:
        return self._out

    @property
    def total(self) -> int:
        """Bytes queued in every slot together."""
        return int(self._lib.cd_total(self._out))

    @property
    def sent(self) -> int:
        """Bytes sent so far, every connection together (read by the metrics)."""
        return int(self._lib.cd_sent(self._out))

    def trim(self) -> int:
        """Free the buffers of drained slots that had no append since the last call (the
        loop, once a second: a busy slot keeps its memory, an idle one holds none)."""
        return int(self._lib.cd_trim(self._out))

    def open(self, slot: int, fd: int, direct: bool) -> int:
        handle = ffi.new("uint64_t *")
        if self._lib.cd_open(self._out, slot, fd, DIRECT if direct else 0, handle) != OK:
            raise ValueError(f"slot {slot} cannot be opened")
        return int(handle[0])

    def tick(self) -> Tick:
        return Tick(self)

    def fanout(
        self,
        tick: Tick | None,
        data: bytes,
        handles: Any,
        count: int,
        exclude: int,
        failed: Any = NULL,
        skip: int = 0,
    ) -> int:
        """The same bytes to `count` handles of the uint64_t[] `handles` but `exclude`'s
        (a user's tag) and `skip` (one slot); how many took them. `failed` (a uint8_t[] of
        `count`, or NULL) marks each handle that was not left out and did not take them
        (gone, sealed, overflowed)."""
        t = NULL if tick is None else tick.ptr
        lib, out = self._lib, self._out
        return int(lib.cd_fanout(out, t, data, len(data), handles, count, exclude, skip, failed))


class Tick:
    """One worker's dirty slots, sent together at the end of its tick (`flush`)."""

    __slots__ = ("_errs", "_handles", "_lib", "_out", "_statuses", "_tick", "failed", "ptr")

    def __init__(self, table: OutTable) -> None:
        self._lib = lib()
        self._out = table.ptr
        tick = self._lib.cd_tick_new(self._out)
        if tick == NULL:
            raise MemoryError("cd_tick_new")
        self.ptr = self._tick = ffi.gc(tick, self._lib.cd_tick_free)
        self._handles = ffi.new("uint64_t[]", table.slots)
        self._statuses = ffi.new("uint32_t[]", table.slots)
        self._errs = ffi.new("int[]", table.slots)
        #: For cd_fanout's `failed`: one byte per slot, reused by every fan-out of the tick.
        self.failed = ffi.new("uint8_t[]", table.slots)

    def flush(self) -> list[tuple[int, int, int]]:
        """Send every dirty plain-TCP slot; (handle, CD_S_* status, errno) for the loop."""
        n = self._lib.cd_tick_flush(
            self._out, self._tick, self._handles, self._statuses, self._errs, len(self._handles)
        )
        if not n:
            return []
        h, s, e = self._handles, self._statuses, self._errs
        return [(int(h[i]), int(s[i]), int(e[i])) for i in range(n)]
