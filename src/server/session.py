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

from .inbox import Cause
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
    STORE_FAILED = "store write failed"


@dataclass(frozen=True, slots=True)
class LoginChecked:
    """The hash executor's answer to one `auth`."""

    user: str
    register: bool
    outcome: Outcome


class Session:
    __slots__ = ("addr", "cid", "conn", "fd", "ip", "mailbox", "out", "rate")

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
        self.mailbox = Mailbox(pool, lambda items: handler(self, items))

    def __repr__(self) -> str:
        return f"<Session {self.label()} {self.conn.state.value}>"

    def label(self) -> str:
        return f"fd={self.fd} user={self.conn.user or '-'} peer={self.addr}"
