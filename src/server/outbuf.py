"""Outbound bytes of one connection, and the budget all of them share.

Workers append whole frames (the fan-out of a message, a reply, a roster
delta); only the loop thread takes bytes out and writes them to the socket.
The buffer is the one thing of a connection that several threads touch, and
it holds bytes only: no socket, no TLS object, no protocol state.
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

    Past the limit, buffers above `SOFT_LIMIT` take nothing more (their
    owners are dropped as slow readers) while small ones still do, so a
    flood costs at most `limit + connections * SOFT_LIMIT` (docs/server.md).
    """

    __slots__ = ("_lock", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            self.used += n

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n

    @property
    def spent(self) -> bool:
        return self.used > self.limit


class OutBuffer:
    __slots__ = ("_budget", "_buf", "_limit", "_lock", "closed", "overflow", "sealed")

    def __init__(self, limit: int, budget: OutboundBudget) -> None:
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._limit = limit
        self._budget = budget
        self.sealed = False  # the final frame is queued: nothing follows it
        self.closed = False  # the socket is gone: everything is dropped
        self.overflow = False  # a limit was hit: the owner must be dropped

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, data: bytes) -> Append:
        with self._lock:
            if self.sealed or self.closed:
                return Append.DROPPED
            if self.overflow:  # already dropped as a slow reader: keep nothing more
                return Append.OVERFLOW
            size = len(self._buf)
            if size + len(data) > self._limit or (size > SOFT_LIMIT and self._budget.spent):
                self.overflow = True
                return Append.OVERFLOW
            self._buf += data
        self._budget.take(len(data))
        return Append.OK

    def seal(self, final: bytes) -> bool:
        """Queue the last frame this connection gets, past any limit; False if already sealed.

        The first final frame wins, so nothing follows a fatal error or a `bye`.
        """
        with self._lock:
            if self.sealed or self.closed:
                return False
            self.sealed = True
            self._buf += final
        self._budget.take(len(final))
        return True

    def write(self, send: Callable[[memoryview], int], chunk: int) -> int:
        """Hand the socket what it takes now, at most `chunk` bytes per call; bytes left.

        `send` is the owner's socket (or TLS) send; its errors propagate (would-block
        included) with whatever was written before them consumed.
        """
        with self._lock:
            buf = self._buf
            sent_total = 0
            try:
                while buf:
                    with memoryview(buf) as view:
                        sent = send(view[:chunk])
                    del buf[:sent]
                    sent_total += sent
            finally:
                if sent_total:
                    self._budget.give(sent_total)
                if not buf and sent_total:
                    # A drained buffer keeps its allocation (a roster, a burst):
                    # give it back so idle connections stay small.
                    self._buf = bytearray()
            return len(self._buf)

    def close(self) -> None:
        """The socket is gone: drop what is queued and refuse what comes."""
        with self._lock:
            self.closed = True
            dropped = len(self._buf)
            self._buf = bytearray()
        if dropped:
            self._budget.give(dropped)
