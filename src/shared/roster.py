"""Roster rules: acknowledged, coalesced deltas with at most one frame in flight.

`RosterOutbox` is the server's side for one connection; `RosterView` is the
client's side. Both are pure code, so the rules can be tested without sockets.
"""

from __future__ import annotations

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .messages import Roster


class RosterOutbox:
    """Changes not yet told to one connection, and the frame awaiting its ack.

    Joins and leaves of one name alternate (the server guarantees it), so a
    join cancels a pending leave and vice versa: a user who joined and left
    meanwhile appears in neither list, and the delta stays relative to the
    last frame sent (clarification 12).
    """

    __slots__ = ("_join", "_leave", "_next_seq", "in_flight")

    def __init__(self) -> None:
        self._join: set[str] = set()
        self._leave: set[str] = set()
        self._next_seq = 1
        self.in_flight: int | None = None

    def full(self, users: list[str]) -> Roster:
        """The first frame: a snapshot. Drops anything pending (the snapshot has it)."""
        if self._next_seq != 1:
            raise LocalProtocolError("the full roster is sent once, first")
        self._join.clear()
        self._leave.clear()
        return self._emit(Roster(self._next_seq, True, users=tuple(users)))

    def joined(self, name: str) -> Roster | None:
        if name in self._leave:
            self._leave.discard(name)
        else:
            self._join.add(name)
        return self._maybe_delta()

    def left(self, name: str) -> Roster | None:
        if name in self._join:
            self._join.discard(name)
        else:
            self._leave.add(name)
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

    def _maybe_delta(self) -> Roster | None:
        if self.in_flight is not None or not self.started or not (self._join or self._leave):
            return None
        delta = Roster(self._next_seq, False, join=tuple(sorted(self._join)),
                       leave=tuple(sorted(self._leave)))
        self._join.clear()
        self._leave.clear()
        return self._emit(delta)

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
        new = (set(frame.users) if frame.full
               else (self.online - set(frame.leave)) | set(frame.join))
        joined, left = new - self.online, self.online - new
        self.online, self.last_seq = new, frame.seq
        return joined, left
