"""Outbound bytes of one connection, and the budget all of them share.

Workers append whole frames (the fan-out of a message, a reply, a roster
delta); only the loop thread takes bytes out and writes them to the socket.
The buffer is the one thing of a connection that several threads touch, and
it holds bytes only: no socket, no TLS object, no protocol state.

The append is the hot path of the fan-out (once per recipient per message),
so it takes one lock and reads two flags; the shared budget is kept by the
loop thread alone, from the sizes it sees when it writes (`OutboundBudget`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import Enum

#: A connection holding more than this when the shared budget is spent is a
#: slow reader: its next append fails (InspIRCd's soft send queue, ngIRCd's 32 KiB).
SOFT_LIMIT = 64 * 1024


class Append(Enum):
    OK = "ok"
    DROPPED = "dropped"  # sealed or closed: nothing may follow the final frame
    OVERFLOW = "overflow"  # the peer does not read: a limit is reached


class OutboundBudget:
    """Bytes queued in every outbound buffer together, against `--max-total-outbuf`.

    Written by the loop thread only (`account`), so it needs no lock: the loop
    sees each buffer's size whenever it writes it, which is within one worker
    tick of every append. Workers only read `spent`. Past the limit, buffers
    above `SOFT_LIMIT` take nothing more (their owners are dropped as slow
    readers) while small ones still do, so a flood costs at most about
    `limit + connections * SOFT_LIMIT` (docs/server.md).
    """

    __slots__ = ("limit", "spent", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.spent = False

    def account(self, delta: int) -> None:
        """A buffer's size changed by `delta` since the loop last saw it (loop thread)."""
        self.used += delta
        self.spent = self.used > self.limit


class OutBuffer:
    """One connection's outbound bytes; while a catch-up runs, live frames wait aside.

    A login's offline messages must reach the client before any live one
    (protocol v1.1 section 3), yet the session is online, and receiving, while
    they are read from the store page by page. So `hold` sets later appends
    aside, `append_first` queues the catch-up in front of them, and `release`
    lets them follow.
    """

    __slots__ = (
        "_budget",
        "_buf",
        "_held",
        "_limit",
        "_lock",
        "closed",
        "counted",
        "overflow",
        "sealed",
    )

    def __init__(self, limit: int, budget: OutboundBudget) -> None:
        self._buf = bytearray()
        self._held: bytearray | None = None
        self._lock = threading.Lock()
        self._limit = limit
        self._budget = budget
        self.counted = 0  # bytes of this buffer in the budget (loop thread)
        self.sealed = False  # the final frame is queued: nothing follows it
        self.closed = False  # the socket is gone: everything is dropped
        self.overflow = False  # a limit was hit: the owner must be dropped

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, data: bytes) -> Append:
        with self._lock:
            if self.sealed or self.closed:
                return Append.DROPPED
            held = self._held
            target = self._buf if held is None else held
            size = len(self._buf) + len(data) + (0 if held is None else len(held))
            if self.overflow or size > self._limit or (size > SOFT_LIMIT and self._budget.spent):
                self.overflow = True
                return Append.OVERFLOW
            target += data
            return Append.OK

    def hold(self) -> None:
        """From now on appends wait aside until `release` (a catch-up is starting)."""
        with self._lock:
            if self._held is None:
                self._held = bytearray()

    def append_first(self, data: bytes) -> Append:
        """Queue catch-up frames ahead of what `hold` set aside (limits as `append`)."""
        with self._lock:
            if self.sealed or self.closed:
                return Append.DROPPED
            held = self._held
            size = len(self._buf) + len(data) + (0 if held is None else len(held))
            if self.overflow or size > self._limit or (size > SOFT_LIMIT and self._budget.spent):
                self.overflow = True
                return Append.OVERFLOW
            self._buf += data
            return Append.OK

    def release(self) -> None:
        """The catch-up is over: what waited aside follows it."""
        with self._lock:
            held, self._held = self._held, None
            if held and not (self.sealed or self.closed):
                self._buf += held

    def seal(self, final: bytes) -> bool:
        """Queue the last frame this connection gets, past any limit; False if already sealed.

        The first final frame wins, so nothing follows a fatal error or a `bye`.
        """
        with self._lock:
            if self.sealed or self.closed:
                return False
            self.sealed = True
            # Live frames held for a catch-up that cannot finish now are dropped:
            # they would overtake offline ones (they are in the history all the same).
            self._held = None
            self._buf += final
            return True

    def write(self, send: Callable[[bytes | bytearray | memoryview], int], chunk: int) -> int:
        """Hand the socket what it takes now, at most `chunk` bytes per call; bytes left.

        `send` is the owner's socket (or TLS) send; its errors propagate (would-block
        included) with whatever was written before them consumed. Loop thread only.
        """
        with self._lock:
            buf = self._buf
            try:
                while buf:
                    if len(buf) <= chunk:
                        sent = send(buf)
                    else:
                        with memoryview(buf) as view:
                            sent = send(view[:chunk])
                    if sent == len(buf):
                        # A drained buffer keeps its allocation (a roster, a burst):
                        # give it back so idle connections stay small.
                        buf = self._buf = bytearray()
                    else:
                        del buf[:sent]
            finally:
                left = len(self._buf)
                self._budget.account(left - self.counted)
                self.counted = left
            return left

    def close(self) -> None:
        """The socket is gone: drop what is queued and refuse what comes (loop thread)."""
        with self._lock:
            self.closed = True
            self._buf = bytearray()
            self._held = None
        self._budget.account(-self.counted)
        self.counted = 0
