"""What other threads ask of the loop thread: a deque of requests and an eventfd.

Workers never touch a socket object. Plain-TCP bytes are sent by the native
library at the end of a worker's tick (one send() per connection, under the
slot's lock); workers tell the loop what that could not finish (TLS slots, a
full socket, an error, a final frame out), which connections must close once
their final frame is out, and which logged in (their login deadline ends). Built before the loop
and the dispatcher, it is what lets each be constructed whole with the
other's channel.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum


class Cause(Enum):
    """Who ended a connection, as the log says it."""

    US = "closed by us"
    PEER = "closed by the peer"  # a polite bye
    BROKEN = "broken by the peer"  # EOF without bye, reset, send error


@dataclass(frozen=True, slots=True)
class Flushed:
    """What a worker's flush could not finish: (slot handle, CD_S_* status, errno) each:
    a TLS slot to write, a full socket, a send error, a final frame out, an overflow."""

    results: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class CloseAfterFlush:
    cid: int
    reason: str
    cause: Cause


@dataclass(frozen=True, slots=True)
class LoggedIn:
    cid: int


@dataclass(frozen=True, slots=True)
class WhenDrained:
    """Call `then(True)` once the connection's buffer is written down to a low mark, or
    `then(False)` as soon as it is ending (closed, timed out, dropped as a slow reader)."""

    cid: int
    then: Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class EndSessions:
    """End every connection logged in as `name` with a `bye` saying `why` (an operator's
    kick, ban or delete; a user's `passwd` or `delete_account`), but the one numbered
    `keep` (the session that asked: it ends itself, or stays); `then(how many)` once they
    are told, on the loop thread."""

    name: str
    why: str
    then: Callable[[int], None]
    keep: int | None = None


Request = Flushed | CloseAfterFlush | LoggedIn | WhenDrained | EndSessions


class LoopInbox:
    __slots__ = ("_pending", "_requests", "fd")

    def __init__(self) -> None:
        self._requests: deque[Request] = deque()
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._pending = False

    # ---- any thread ------------------------------------------------------
    def flushed(self, results: Iterable[tuple[int, int, int]]) -> None:
        self._put(Flushed(tuple(results)))

    def close_after_flush(self, cid: int, reason: str, cause: Cause) -> None:
        self._put(CloseAfterFlush(cid, reason, cause))

    def logged_in(self, cid: int) -> None:
        self._put(LoggedIn(cid))

    def when_drained(self, cid: int, then: Callable[[bool], None]) -> None:
        self._put(WhenDrained(cid, then))

    def end_sessions(
        self, name: str, why: str, then: Callable[[int], None], keep: int | None = None
    ) -> None:
        self._put(EndSessions(name, why, then, keep))

    def wake(self) -> None:
        """Interrupt the loop's wait (safe from a signal handler)."""
        os.eventfd_write(self.fd, 1)

    def _put(self, request: Request) -> None:
        self._requests.append(request)  # deque.append is atomic
        if not self._pending:
            self._pending = True
            self.wake()

    # ---- loop thread -----------------------------------------------------
    def take(self) -> list[Request]:
        """Everything asked so far, in order (after the eventfd fired, or at any time)."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)
        self._pending = False
        requests = self._requests
        return [requests.popleft() for _ in range(len(requests))]

    def close(self) -> None:
        os.close(self.fd)
