"""Roster rules: acknowledged, coalesced deltas with at most one frame in flight.

`RosterOutbox` is the server's side for one connection; `RosterView` is the
client's side. Both are pure code, so the rules can be tested without sockets.
"""

from __future__ import annotations

import bisect

import msgspec

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .messages import Roster, encode_name_items, encode_roster


class ChangeLog:
    """Every join and leave in order, shared by the outboxes of all connections.

    An outbox keeps only a cursor into it, so a connection that is slow to
    ack costs an integer, not a copy of every change made meanwhile; the
    log drops what every cursor has passed (`trim`).

    Each change's name is also kept encoded, as a JSON array item, in one
    buffer: the joins of a range without leaves (a login storm) are one slice
    of it, copied into every frame that tells them, never encoded or sorted
    again per connection (N logins tell N^2 names in all).
    """

    __slots__ = (
        "_at",
        "_base",
        "_dropped",
        "_items",
        "_joined",
        "_leaves",
        "_memo",
        "_names",
        "_offsets",
    )

    def __init__(self) -> None:
        self._names: list[str] = []
        self._joined: list[bool] = []
        self._leaves: list[int] = []  # positions (in the whole history) of the leaves
        self._base = 0  # index, in the whole history, of _names[0]
        #: `"name",` for every change, one after the other; `_offsets[i]` is where change i
        #: starts, counted in every byte ever appended (`_dropped` of them trimmed away).
        self._items = bytearray()
        self._offsets: list[int] = []
        self._dropped = 0
        self._at: dict[str, int] = {}  # name -> position of its last change
        #: The last joins-only range given out: the subscribers told at one window's end
        #: mostly share their cursor, and so one copy of the names.
        self._memo: tuple[int, int, bytes] = (0, 0, b"")

    def __len__(self) -> int:
        return len(self._names)

    @property
    def end(self) -> int:
        return self._base + len(self._names)

    def append(self, name: str, joined: bool) -> None:
        position = self.end
        if not joined:
            self._leaves.append(position)
        self._names.append(name)
        self._joined.append(joined)
        self._offsets.append(self._dropped + len(self._items))
        self._items += encode_name_items((name,)) + b","
        self._at[name] = position

    def net(self, since: int, skip: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(joined, left) between `since` and now, each in the order of the changes
        (`net_items` decoded: tests and the outbox's own log)."""
        join, leave = self.net_items(since, skip)
        return _names(join), _names(leave)

    def net_items(self, since: int, skip: str | None = None) -> tuple[bytes, bytes]:
        """(joined, left) between `since` and now, as JSON array items
        (`messages.encode_name_items`), in the order of the changes; `skip` (the
        connection's own user) in neither.

        Joins and leaves of one name alternate (the server guarantees it), so
        a name whose first and last change differ is back where it was: it
        appears in neither list (a user who joined and left meanwhile), and
        the result is relative to the state at `since` (clarification 12).
        """
        start = max(since - self._base, 0)
        stop = len(self._names)
        if start >= stop:
            return b"", b""
        if not self._leaves or self._leaves[-1] < self._base + start:
            # Joins only (a login burst): each name once, since joins and leaves of a
            # name alternate, so the joins are the range's slice of `_items`.
            at = self._at.get(skip) if skip is not None else None
            if at is not None and at >= self._base + start:
                return self._cut(start, at - self._base), b""
            memo = self._memo
            if memo[0] == self._base + start and memo[1] == self.end:
                return memo[2], b""
            with memoryview(self._items) as view:
                items = bytes(view[self._offsets[start] - self._dropped : -1])
            self._memo = (self._base + start, self.end, items)
            return items, b""
        first: dict[str, bool] = {}
        last: dict[str, bool] = {}
        for name, joined in zip(self._names[start:], self._joined[start:], strict=True):
            if name != skip:
                first.setdefault(name, joined)
                last[name] = joined
        join = [n for n, j in first.items() if j and last[n]]
        leave = [n for n, j in first.items() if not j and not last[n]]
        return encode_name_items(join), encode_name_items(leave)

    def _cut(self, start: int, own: int) -> bytes:
        """The joins of `start`.. without change `own` (the connection's own user)."""
        offsets, dropped = self._offsets, self._dropped
        with memoryview(self._items) as view:
            head = view[offsets[start] - dropped : offsets[own] - dropped]
            rest = view[offsets[own + 1] - dropped :] if own + 1 < len(offsets) else view[:0]
            return b"".join((head, rest))[:-1]

    def trim(self, keep_from: int) -> None:
        """Forget the changes before `keep_from` (the oldest cursor still in use)."""
        drop = min(max(keep_from - self._base, 0), len(self._names))
        if drop:
            del self._names[:drop]
            del self._joined[:drop]
            self._base += drop
            kept = bisect.bisect_left(self._leaves, self._base)
            del self._leaves[:kept]
            cut = (
                self._offsets[drop]
                if drop < len(self._offsets)
                else self._dropped + len(self._items)
            ) - self._dropped
            del self._items[:cut]
            del self._offsets[:drop]
            self._dropped += cut
            self._memo = (0, 0, b"")
            if len(self._at) > 2 * len(self._names) + 64:  # names long gone: forget them
                base = self._base
                self._at = {n: base + i for i, n in enumerate(self._names)}


def _names(items: bytes) -> tuple[str, ...]:
    return tuple(msgspec.json.decode(b"[" + items + b"]")) if items else ()


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
        return Roster(self._start(), True, users=tuple(users))

    def full_frame(self, users: bytes, before: bytes = b"") -> bytes:
        """`full`, encoded: `users` are the names as array items (`encode_name_items`),
        `before` the frames that go ahead of it (`auth_ok`)."""
        return encode_roster(self._start(), True, users=users, before=before)

    def _start(self) -> int:
        if self._next_seq != 1:
            raise LocalProtocolError("the full roster is sent once, first")
        self._cursor = self._log.end
        return self._emit()

    def joined(self, name: str) -> Roster | None:
        return self._record(name, True)

    def left(self, name: str) -> Roster | None:
        return self._record(name, False)

    def changed(self) -> Roster | None:
        """The shared log grew: the delta to send now, when nothing is in flight."""
        return self._maybe_delta()

    def changed_frame(self) -> bytes | None:
        """`changed`, encoded (the server's way: the names are copied, not encoded)."""
        delta = self._advance()
        if delta is None:
            return None
        seq, join, leave = delta
        return encode_roster(seq, False, join=join, leave=leave)

    def ack(self, seq: int) -> Roster | None:
        """Take an ack; return the coalesced delta to send now, if anything changed."""
        self.take_ack(seq)
        return self._maybe_delta()

    def take_ack(self, seq: int) -> None:
        """Take an ack (bad_request for a wrong `seq`); what changed meanwhile is the next
        `changed` / `changed_frame`, now or at the end of a login storm's window."""
        if self.in_flight is None or seq != self.in_flight:
            raise RemoteProtocolError(
                Code.BAD_REQUEST, f"roster_ack for seq {seq}, expected {self.in_flight}"
            )
        self.in_flight = None

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
        delta = self._advance()
        if delta is None:
            return None
        seq, join, leave = delta
        return Roster(seq, False, join=_names(join), leave=_names(leave))

    def _advance(self) -> tuple[int, bytes, bytes] | None:
        """Move the cursor to the log's end: (seq, joins, leaves) of the delta that tells
        what changed, None when nothing is due (a frame in flight, or no net change)."""
        if self.in_flight is not None or not self.started or self._cursor == self._log.end:
            return None
        join, leave = self._log.net_items(self._cursor, self.own)
        self._cursor = self._log.end
        if self._private:
            self._log.trim(self._cursor)
        if not (join or leave):
            return None
        return self._emit(), join, leave

    def _emit(self) -> int:
        seq = self.in_flight = self._next_seq
        self._next_seq += 1
        return seq


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
