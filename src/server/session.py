"""`Session`: the server's half of one connection that the workers see.

A session is made whole at accept time and holds what its mailbox needs: the
protocol state (`ServerConnection`), the outbound buffer, the rate bucket and
who the peer is. Everything in it except the outbound buffer is touched only
from its own mailbox, one worker at a time; the socket is not here at all (the
loop's `Transport` owns it). The items a mailbox carries are defined here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from chat.shared.connection import ServerConnection
from chat.shared.errors import RemoteProtocolError
from chat.shared.messages import MsgId, Send

from .inbox import Cause
from .msgstore import Page
from .outbuf import OutBuffer
from .pool import Mailbox, Submitter
from .ratelimit import TokenBucket


# ---- mailbox items (bytes items are frame payloads) ------------------------
@dataclass(frozen=True, slots=True)
class PeerGone:
    """The peer's stream ended: EOF (frames before it are still answered) or an error."""

    reason: str
    cause: Cause = Cause.BROKEN


@dataclass(frozen=True, slots=True)
class Abort:
    """The server ends the connection with this fatal error (a framing error, a deadline)."""

    error: RemoteProtocolError
    reason: str


@dataclass(frozen=True, slots=True)
class Evict:
    """Drop the connection with a `bye` saying why (a slow reader)."""

    why: str


class Outcome(Enum):
    OK = "ok"
    BAD_CREDENTIALS = "bad credentials"
    USER_EXISTS = "user name taken"
    STORE_FAILED = "accounts store failed"
    WAITED_TOO_LONG = "waited too long for the account's turn"  # answered rate_limited


@dataclass(frozen=True, slots=True)
class LoginChecked:
    """The hash executor's answer to one `auth`."""

    user: str
    register: bool
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Answers:
    """What answers a group of sends: `sent` for those that passed the rate limit."""

    sends: tuple[Send, ...]
    passed: tuple[bool, ...]
    delivered: bytes  # the names, encoded once (`encode_names`)
    missing: tuple[str, ...]
    queued: tuple[str, ...]
    #: In a cluster, while other nodes are asked: the route and the messages, to move
    #: the names no node took from `delivered` to `missing` (and queue them).
    route: Any = None
    msgs: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Answered:
    """What a group of sends waited for came: the store's answer (`stored`), and which other
    nodes took the messages (`reached`)."""

    stored: bool
    reached: frozenset[str]


@dataclass(frozen=True, slots=True)
class Stored:
    """The messages of the sends awaiting their answers are on disk for good (or not: `ok`)."""

    ok: bool


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A history page read for the request `id`; None when the readers were too busy."""

    id: MsgId
    page: Page | None


@dataclass(frozen=True, slots=True)
class OfflineRead:
    """The next page of the offline queue (a login's catch-up); None when too busy."""

    page: Page | None


@dataclass(frozen=True, slots=True)
class Drained:
    """The loop wrote the catch-up so far (`ok`), or the connection is ending (not `ok`)."""

    ok: bool


class Session:
    __slots__ = (
        "addr",
        "awaiting",
        "cid",
        "conn",
        "fd",
        "ip",
        "mailbox",
        "offline_upto",
        "out",
        "rate",
    )

    def __init__(
        self,
        cid: int,
        fd: int,
        addr: tuple[str, int],
        out: OutBuffer,
        rate: TokenBucket | None,
        pool: Submitter,
        handler: Callable[[Session, list[Any]], int | None],
    ) -> None:
        self.cid = cid
        self.fd = fd  # for the log only: the loop owns the socket
        self.ip = addr[0]
        self.addr = f"{addr[0]}:{addr[1]}"
        self.conn = ServerConnection()
        self.out = out
        self.rate = rate
        #: Answers held back until the store has made their messages durable.
        self.awaiting: Answers | None = None
        #: The catch-up's position: the last offline message queued for this session.
        self.offline_upto = 0
        self.mailbox = Mailbox(pool, lambda items: handler(self, items))

    def __repr__(self) -> str:
        return f"<Session {self.label()} {self.conn.state.value}>"

    def label(self) -> str:
        return f"fd={self.fd} user={self.conn.user or '-'} peer={self.addr}"
