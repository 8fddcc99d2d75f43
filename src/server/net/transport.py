"""`Transport`: the loop thread's half of one connection, the only holder of its socket.

The socket (and its TLS object, when the listener speaks TLS), the codec's
decoder, the epoll interest, the deadlines and the I/O lifecycle (a table:
net/lifecycle.py) live here; only the loop thread touches a transport, so
none of this needs a lock, and OpenSSL's rule that one SSL object is never
used by two threads at once holds by construction: no other thread has a
reference to the socket. The protocol's half of the connection is its
`User` (core/user.py): the loop posts to its mailbox, and workers append to
its slot.
"""

from __future__ import annotations

import socket
import ssl

from chat.server.core.user import User
from chat.server.net.codec import Decoder
from chat.server.net.inbox import Cause
from chat.server.net.lifecycle import READING, WRITING, Move, Phase, next_phase

_SEND_CHUNK = 1024 * 1024  # one send() never hands the kernel more than this
_TLS_CHUNK = 16 * 1024  # one TLS record


class Transport:
    __slots__ = (
        "accepted_at",
        "chunk",
        "closing",
        "counted",
        "decoder",
        "events",
        "frame_started",
        "handshake_wants",
        "handshaking",
        "last_rx",
        "linger_deadline",
        "paused",
        "phase",
        "read_wants_write",
        "reading",
        "send",
        "slot",
        "sock",
        "tls",
        "user",
        "write_pending",
        "writing",
    )

    def __init__(
        self,
        sock: socket.socket,
        user: User,
        slot: int,
        decoder: Decoder,
        now: float,
        counted: bool,
    ) -> None:
        self.sock = sock
        self.user = user
        self.slot = slot  # its outbound slot in the native table, freed at the close
        self.decoder = decoder
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.send = sock.send  # bound once: the loop writes on every tick of the workers
        self.chunk = _TLS_CHUNK if self.tls else _SEND_CHUNK
        self.phase = Phase.OPEN
        #: `phase in READING` and `phase in WRITING`, kept beside the phase by `move` (the
        #: loop asks on every read; a set lookup hashes an Enum in Python).
        self.reading = True
        self.writing = True
        self.handshaking = self.tls  # the TLS layer is not ready yet
        self.handshake_wants = 1  # selectors.EVENT_READ: a ClientHello comes first
        self.counted = counted  # holds one of --max-clients (a refused one does not)
        self.accepted_at = now
        self.last_rx = now
        self.frame_started: float | None = None  # a frame's first bytes arrived, not its end
        self.paused = False  # not read while its mailbox is backlogged
        self.read_wants_write = False  # TLS: a read needs the socket writable first
        self.closing: tuple[str, Cause] | None = None  # why, once the final frame is queued
        self.linger_deadline = 0.0
        self.events = 0  # the interest registered with epoll
        #: Bytes wait for the socket to take them (the last flush met a full socket, or a
        #: TLS write is owed): the loop wants EPOLLOUT. Kept here so that deciding the
        #: interest never asks the slot (and never waits for its mutex).
        self.write_pending = False

    def move(self, move: Move) -> Phase:
        phase = self.phase = next_phase(self.phase, move)
        self.reading = phase in READING
        self.writing = phase in WRITING
        return phase

    @property
    def open(self) -> bool:
        """Frames are read: no end is under way."""
        return self.phase is Phase.OPEN

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    @property
    def reads(self) -> bool:
        return self.reading and not self.paused

    @property
    def writes(self) -> bool:
        return self.writing and not self.handshaking

    @property
    def cid(self) -> int:
        return self.user.cid

    @property
    def fd(self) -> int:
        return self.user.fd

    def label(self) -> str:
        return self.user.label()
