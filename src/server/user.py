"""`User`: one per connection, owning its receive side and its send side.

Receive side (loop thread only): the socket reads and the frame decoder
inside `conn`. Protocol state (`conn.state`, roster outbox) changes under the
hub lock. Send side (any thread): an outbound buffer under `_out_lock`;
appends never block, `flush` writes what the socket takes now and asks the
loop for write readiness for the rest. The epoll registration of this fd is
changed only under `_out_lock`, so the loop and the workers never race on it.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING

from chat.shared.connection import ServerConnection

if TYPE_CHECKING:
    from .pool import Mailbox
    from .ratelimit import TokenBucket

_SEND_MAX = 1024 * 1024  # one send() call never hands the kernel more than this


class Cause(Enum):
    """Who ended a connection, as the log says it."""

    US = "closed by us"
    PEER = "closed by the peer"  # a polite bye
    BROKEN = "broken by the peer"  # EOF without bye, reset, send error


class Append(Enum):
    OK = "ok"
    DROPPED = "dropped"  # sealed or closed: nothing may follow the final frame
    OVERFLOW = "overflow"  # the peer does not read: the buffer limit is reached


class User:
    __slots__ = (
        "_out",
        "_out_lock",
        "_registered_events",
        "_selector",
        "ack_deadline",
        "addr",
        "backlogged",
        "broken",
        "close_cause",
        "close_reason",
        "closed",
        "conn",
        "draining",
        "fd",
        "last_rx",
        "linger_deadline",
        "mailbox",
        "max_outbuf",
        "name",
        "overflow",
        "rate",
        "reading",
        "sealed",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        addr: str,
        conn: ServerConnection,
        selector: selectors.BaseSelector,
        max_outbuf: int,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.conn = conn
        self.name: str | None = None
        self.max_outbuf = max_outbuf
        self._selector = selector
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._registered_events = selectors.EVENT_READ
        self.reading = True
        self.sealed = False
        self.closed = False
        self.broken: str | None = None  # why a send failed (the peer's doing)
        self.backlogged = False
        self.draining = False  # our side is shut; reading only until the peer's EOF
        self.overflow = False  # the outbound buffer limit was hit
        self.last_rx = time.monotonic()
        self.ack_deadline: float | None = None
        self.linger_deadline: float | None = None
        self.close_reason: str | None = None  # set once a close is under way
        self.close_cause = Cause.US
        self.mailbox: Mailbox | None = None
        self.rate: TokenBucket | None = None
        selector.register(sock, selectors.EVENT_READ, self)

    def __repr__(self) -> str:
        return f"<User fd={self.fd} {self.name or '-'} {self.addr} {self.conn.state.value}>"

    def label(self) -> str:
        return f"fd={self.fd} user={self.name or '-'} peer={self.addr}"

    # ---- send side -------------------------------------------------------
    @property
    def pending_out(self) -> int:
        return len(self._out)

    def append(self, data: bytes) -> Append:
        """Queue bytes to send; the caller flushes (once per batch, to coalesce writes)."""
        with self._out_lock:
            if self.sealed or self.closed:
                return Append.DROPPED
            if len(self._out) + len(data) > self.max_outbuf:
                self.overflow = True
                return Append.OVERFLOW
            self._out += data
            return Append.OK

    def seal(self, final: bytes | None = None) -> bool:
        """Queue the last frame this connection will ever get; stop reading.

        Returns False when already sealed (the first final frame wins, so
        nothing follows a fatal error or a `bye`).
        """
        with self._out_lock:
            if self.sealed or self.closed:
                return False
            if final:
                self._out += final
            self.sealed = True
            self.reading = False
            self._update_interest()
            return True

    def flush(self) -> bool:
        """Write what the socket takes now.

        Returns False when the connection must go: the peer broke it, or it
        overflowed its buffer (a client that does not read).
        """
        with self._out_lock:
            if self.closed:
                return True
            if self.broken or self.overflow:
                return False
            out = self._out
            while out:
                try:
                    sent = self.sock.send(out[:_SEND_MAX] if len(out) > _SEND_MAX else out)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self.broken = errno.errorcode.get(exc.errno or 0, str(exc))
                    out.clear()
                    self._update_interest()
                    return False
                del out[:sent]
            if not out:
                # A drained buffer keeps its allocation (a big roster, a burst):
                # give it back so idle connections stay small.
                self._out = bytearray()
            self._update_interest()
            return True

    # ---- receive side (loop thread) ---------------------------------------
    def set_reading(self, reading: bool) -> None:
        with self._out_lock:
            if self.sealed or self.closed:
                return
            self.reading = reading
            self._update_interest()

    def start_draining(self) -> None:
        """Lingering close: send FIN, then read and drop until the peer's EOF.

        Closing a socket that still has unread input makes the kernel send an
        RST, which can destroy the final frame (an error or a bye) before the
        peer reads it. Shutting down our side first delivers it, then EOF.
        """
        with self._out_lock:
            if self.closed or self.draining:
                return
            self.draining = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            self.reading = True
            self._update_interest()

    def close_socket(self) -> None:
        """Unregister and close; later appends and flushes are no-ops."""
        with self._out_lock:
            if self.closed:
                return
            self.closed = True
            self._out.clear()
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)
            self.sock.close()

    def _update_interest(self) -> None:
        """Recompute the epoll interest; `_out_lock` is held."""
        if self.closed:
            return
        events = (selectors.EVENT_READ if self.reading else 0) | (
            selectors.EVENT_WRITE if self._out else 0
        )
        if events != self._registered_events:
            self._selector.modify(self.sock, events, self)
            self._registered_events = events
