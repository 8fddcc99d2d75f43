"""`Transport`: the loop thread's half of one connection, the only holder of its socket.

The socket (and its TLS object, when the port speaks TLS), the frame decoder,
the epoll interest and every deadline live here; only the loop thread touches
a transport, so none of this needs a lock, and OpenSSL's rule that one SSL
object is never used by two threads at once holds by construction: no other
thread has a reference to the socket. Workers reach a connection through its
`Session` (protocol state, outbound buffer) and ask the loop for I/O through
the `LoopInbox`.
"""

from __future__ import annotations

import socket
import ssl

from chat.server.core.user import Session
from chat.server.net.inbox import Cause
from chat.shared.framing import FrameDecoder

_SEND_CHUNK = 1024 * 1024  # one send() never hands the kernel more than this
_TLS_CHUNK = 16 * 1024  # one TLS record


class Transport:
    __slots__ = (
        "accepted_at",
        "chunk",
        "closed",
        "closing",
        "counted",
        "decoder",
        "draining",
        "events",
        "expiring",
        "frame_started",
        "handshake_wants",
        "handshaking",
        "last_rx",
        "linger_deadline",
        "paused",
        "read_wants_write",
        "reading",
        "send",
        "session",
        "slot",
        "sock",
        "tls",
        "write_pending",
    )

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        slot: int,
        max_frame: int,
        now: float,
        counted: bool,
    ) -> None:
        self.sock = sock
        self.session = session
        self.slot = slot  # its outbound slot in the native table, freed at the close
        self.decoder = FrameDecoder(max_frame)
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.send = sock.send  # bound once: the loop writes on every tick of the workers
        self.chunk = _TLS_CHUNK if self.tls else _SEND_CHUNK
        self.handshaking = self.tls
        self.handshake_wants = 1  # selectors.EVENT_READ: a ClientHello comes first
        self.counted = counted  # holds one of --max-clients (a refused one does not)
        self.accepted_at = now
        self.last_rx = now
        self.frame_started: float | None = None  # a frame's first bytes arrived, not its end
        self.reading = True
        self.paused = False  # not read while its mailbox is backlogged
        self.read_wants_write = False  # TLS: a read needs the socket writable first
        self.draining = False  # our side is shut; reading only until the peer's EOF
        self.closing: tuple[str, Cause] | None = None  # why, once a close is under way
        self.linger_deadline = 0.0
        self.expiring = False  # a deadline's error is on its way through the mailbox
        self.closed = False
        self.events = 0  # the interest registered with epoll
        #: Bytes wait for the socket to take them (the last flush met a full socket, or a
        #: TLS write is owed): the loop wants EPOLLOUT. Kept here so that deciding the
        #: interest never asks the slot (and never waits for its mutex).
        self.write_pending = False

    @property
    def cid(self) -> int:
        return self.session.cid

    @property
    def fd(self) -> int:
        return self.session.fd

    def label(self) -> str:
        return self.session.label()
