"""Outbound bytes of one connection: a handle on its slot in the native table.

Workers append whole frames (the fan-out of a message, a reply, a roster
delta) and, at the end of their tick, send what plain-TCP slots hold
(`native.Tick.flush`); the loop writes TLS slots (`write`) and whatever a
full socket left behind (`flush`). The bytes, the limits and the per-slot
lock are in libchatdispatch (chat_dispatch.h); this object holds no bytes,
no socket and no protocol state, only the handle, so nothing of it is shared
but what the library guards.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from chat.server.core import native
from chat.shared.errors import LocalProtocolError

#: A connection holding more than this when the shared budget is spent is a
#: slow reader: its next append fails (InspIRCd's soft send queue, ngIRCd's 32 KiB).
SOFT_LIMIT = 64 * 1024

_PEEK = 256 * 1024  # most bytes the loop copies out for one TLS write


class Append(Enum):
    OK = "ok"
    DROPPED = "dropped"  # sealed or closed: nothing may follow the final frame
    OVERFLOW = "overflow"  # the peer does not read: a limit is reached


#: Every code an append can return (chat_dispatch.h): no memory is an overflow there, and
#: EINVAL is our own misuse of the library, never the peer's doing.
_RESULTS = {native.OK: Append.OK, native.DROPPED: Append.DROPPED, native.OVERFLOW: Append.OVERFLOW}


def _result(rc: int) -> Append:
    result = _RESULTS.get(rc)
    if result is None:
        raise LocalProtocolError(f"libchatdispatch refused an append: code {rc}")
    return result


_NO_TICK = native.NULL


def _tick(tick: native.Tick | None) -> Any:
    return _NO_TICK if tick is None else tick.ptr


class OutBuffer:
    """One connection's slot. `tick` (a worker's) marks the slot for that worker's flush;
    without one (the loop, tests) the caller writes it itself."""

    __slots__ = ("_lib", "_out", "direct", "handle")

    def __init__(self, table: native.OutTable, handle: int, direct: bool) -> None:
        self._lib = native.lib()
        self._out = table.ptr
        self.handle = handle
        self.direct = direct  # plain TCP: the library sends; TLS: the loop does

    def __len__(self) -> int:
        """Bytes queued to send (not those held aside for a catch-up)."""
        return int(self._lib.cd_pending(self._out, self.handle))

    def _state(self) -> int:
        return int(self._lib.cd_state(self._out, self.handle))

    @property
    def sealed(self) -> bool:
        return bool(self._state() & native.SEALED)

    @property
    def closed(self) -> bool:
        return bool(self._state() & native.CLOSED)

    @property
    def overflow(self) -> bool:
        return bool(self._state() & native.OVERFLOWED)

    def append(self, data: bytes, tick: native.Tick | None = None) -> Append:
        ptr = _NO_TICK if tick is None else tick.ptr
        rc = self._lib.cd_append(self._out, ptr, self.handle, data, len(data))
        return Append.OK if rc == native.OK else _result(rc)

    def set_tag(self, tag: int) -> None:
        """Name the slot's user for the fan-out (a message to everyone skips its sender's)."""
        self._lib.cd_set_tag(self._out, self.handle, tag)

    def hold(self) -> None:
        """From now on appends wait aside until `release` (a catch-up is starting)."""
        self._lib.cd_hold(self._out, self.handle)

    def append_first(self, data: bytes, tick: native.Tick | None = None) -> Append:
        """Queue catch-up frames ahead of what `hold` set aside (limits as `append`)."""
        rc = self._lib.cd_append_first(self._out, _tick(tick), self.handle, data, len(data))
        return _result(rc)

    def release(self, tick: native.Tick | None = None) -> Append:
        """The catch-up is over: what waited aside follows it (OVERFLOW when it cannot, for
        want of memory: the slot is then reported and the connection dropped)."""
        return _result(self._lib.cd_release(self._out, _tick(tick), self.handle))

    def seal(self, final: bytes, tick: native.Tick | None = None) -> bool:
        """Queue the last frame this connection gets, past any limit; False if already sealed.

        The first final frame wins, so nothing follows a fatal error or a `bye`;
        live frames held for a catch-up are dropped (they would overtake offline ones).
        """
        rc = self._lib.cd_seal(self._out, _tick(tick), self.handle, final, len(final))
        return bool(rc == native.OK)

    def flush(self) -> tuple[int, int, int]:
        """Send what a plain-TCP slot holds (loop thread): (CD_S_* status, errno, bytes left)."""
        err = native.ffi.new("int *")
        left = native.ffi.new("size_t *")
        status = self._lib.cd_flush(self._out, self.handle, err, left)
        return int(status), int(err[0]), int(left[0])

    def write(self, send: Callable[[bytes], int], chunk: int) -> int:
        """Hand `send` (a TLS socket's) what it takes now, `chunk` bytes at most per call;
        bytes left. Its errors propagate (would-block included) with what was written
        before them consumed; after a would-block the same bytes come again (OpenSSL
        wants a retried write to carry them). Loop thread only."""
        buf = native.ffi.new("uint8_t[]", min(chunk, _PEEK))
        lib, out, handle = self._lib, self._out, self.handle
        while True:
            n = lib.cd_peek(out, handle, buf, len(buf))
            if not n:
                return 0
            sent = send(native.ffi.buffer(buf, n)[:])
            lib.cd_consume(out, handle, sent)
            if sent < n:
                return int(lib.cd_pending(out, handle))

    def close(self) -> None:
        """The socket is going: drop what is queued; the fd is never used again by the
        library once this returns (loop thread, before it closes the fd)."""
        self._lib.cd_close(self._out, self.handle)
