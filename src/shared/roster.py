"""Roster rules: acknowledged, coalesced deltas with at most one frame in flight.

`RosterOutbox` is the server's side for one connection; `RosterView` is the
client's side. Both are pure code, so the rules can be tested without sockets.
"""

from __future__ import annotations

import bisect

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .messages import Roster


class ChangeLog:
    """Every join and leave in order, shared by the outboxes of all connections.

    An outbox keeps only a cursor into it, so a connection that is slow to
    ack costs an integer, not a copy of every change made meanwhile; the
    log drops what every cursor has passed (`trim`).
    """

    __slots__ = ("_base", "_joined", "_leaves", "_names")

    def __init__(self) -> None:
        self._names: list[str] = []
        self._joined: list[bool] = []
        self._leaves: list[int] = []  # positions (in the whole history) of the leaves
        self._base = 0  # index, in the whole history, of _names[0]

    def __len__(self) -> int:
        return len(self._names)

    @property
    def end(self) -> int:
        return self._base + len(self._names)

    def append(self, name: str, joined: bool) -> None:
        if not joined:
            self._leaves.append(self.end)
        self._names.append(name)
        self._joined.append(joined)

    def net(self, since: int, skip: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(joined, left) between `since` and now, each sorted.

        Joins and leaves of one name alternate (the server guarantees it), so
        a name whose first and last change differ is back where it was: it
        appears in neither list (a user who joined and left meanwhile), and
        the result is relative to the state at `since` (clarification 12).
        """
        start = max(since - self._base, 0)
        names = self._names[start:]
        if not self._leaves or self._leaves[-1] < self._base + start:
            # Joins only (a login burst): each name once, since joins and leaves of a
            # name alternate. Sorting in C instead of a dict pass per name: this runs
            # for every ack, and a burst of N logins sends O(N^2) names in all.
            if skip is not None and skip in names:
                names.remove(skip)
            names.sort()
            return tuple(names), ()
        first: dict[str, bool] = {}
        last: dict[str, bool] = {}
        for name, joined in zip(names, self._joined[start:], strict=True):
            if name != skip:
                first.setdefault(name, joined)
                last[name] = joined
        join = sorted(n for n, j in first.items() if j and last[n])
        leave = sorted(n for n, j in first.items() if not j and not last[n])
        return tuple(join), tuple(leave)

    def trim(self, keep_from: int) -> None:
        """Forget the changes before `keep_from` (the oldest cursor still in use)."""
        drop = min(max(keep_from - self._base, 0), len(self._names))
        if drop:
            del self._names[:drop]
            del self._joined[:drop]
            self._base += drop
            kept = bisect.bisect_left(self._leaves, self._base)
            del self._leaves[:kept]


class RosterOutbox:
    """Where one connection stands in the change log, and the frame awaiting its ack.

    With a shared `log`, the server appends each change once and calls
    `changed()` on every outbox; alone (no `log` given) `joined`/`left`
    record the change in a private log, which keeps this class usable and
    testable on its own. `own` is the connection's user name: a session
    never hears of its own user (clarification 8).
    """

    __slots__ = ("_cursor", "_log", "_next_seq", "_private", "in_flight", "own")

    def __init__(self, log: ChangeLog | None = None, own: str | None = None) -> None:
        self._private = log is None
        self._log = ChangeLog() if log is None else log
        self._cursor = self._log.end
        self._next_seq = 1
        self.in_flight: int | None = None
        self.own = own

    @property
    def cursor(self) -> int:
        """The first change not yet covered by a frame sent on this connection."""
        return self._cursor

    def full(self, users: list[str]) -> Roster:
        """The first frame: a snapshot. Changes before it are in the snapshot."""
        if self._next_seq != 1:
            raise LocalProtocolError("the full roster is sent once, first")
        self._cursor = self._log.end
        return self._emit(Roster(self._next_seq, True, users=tuple(users)))

    def joined(self, name: str) -> Roster | None:
        return self._record(name, True)

    def left(self, name: str) -> Roster | None:
        return self._record(name, False)

    def changed(self) -> Roster | None:
        """The shared log grew: the delta to send now, when nothing is in flight."""
        return self._maybe_delta()

    def ack(self, seq: int) -> Roster | None:
        """Take an ack; return the coalesced delta to send now, if anything changed."""
        if self.in_flight is None or seq != self.in_flight:
            raise RemoteProtocolError(
                Code.BAD_REQUEST, f"roster_ack for seq {seq}, expected {self.in_flight}"
            )
        self.in_flight = None
        return self._maybe_delta()

    @property
    def started(self) -> bool:
        return self._next_seq > 1

    def _record(self, name: str, joined: bool) -> Roster | None:
        if not self._private:
            raise LocalProtocolError("a shared change log is appended to by its owner")
        self._log.append(name, joined)
        if not self.started:
            self._log.trim(self._log.end)  # the snapshot will have it
        return self._maybe_delta()

    def _maybe_delta(self) -> Roster | None:
        if self.in_flight is not None or not self.started or self._cursor == self._log.end:
            return None
        join, leave = self._log.net(self._cursor, self.own)
        self._cursor = self._log.end
        if self._private:
            self._log.trim(self._cursor)
        if not (join or leave):
            return None
        return self._emit(Roster(self._next_seq, False, join=join, leave=leave))

    def _emit(self, frame: Roster) -> Roster:
        self.in_flight = frame.seq
        self._next_seq += 1
        return frame


class RosterView:
    """What a client knows of who is online, built from roster frames."""

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.last_seq: int | None = None

    def apply(self, frame: Roster) -> tuple[set[str], set[str]]:
        """Apply one frame; return (joined, left) relative to the view before it."""
        if self.last_seq is not None and frame.seq != self.last_seq + 1:
            raise RemoteProtocolError(
                Code.BAD_REQUEST, f"roster seq {frame.seq} after {self.last_seq}"
            )
        new = set(frame.users) if frame.full else (self.online - set(frame.leave)) | set(frame.join)
        joined, left = new - self.online, self.online - new
        self.online, self.last_seq = new, frame.seq
        return joined, left
