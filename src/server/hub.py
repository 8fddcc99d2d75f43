"""Who is online, and the roster and message rules that follow from it.

The hub lock guards everything here: `_sessions` (name -> that user's
sessions in CHAT, in arrival order), `_subscribers` (every session that got
its full roster, ROSTER and CHAT, with its roster outbox and ack deadline)
and the roster change log they share. A roster outbox is touched by other
sessions' threads (a join is announced to everyone), which is why it lives
here, under this lock, and not in the connection. The lock is taken before
an outbound buffer's lock, never after (docs/server.md, "Locking rules").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from chat.shared.messages import BROADCAST, Recipients, Roster, encode, encode_names
from chat.shared.roster import ChangeLog, RosterOutbox

from . import native
from .session import Session

_TRIM_MIN = 1024  # roster log entries before the first trim

#: The worker's tick: every append through it is sent at the end of the tick.
Dirty = native.Tick | None
T = TypeVar("T")


class Targets:
    """Where one routed message goes: handles of outbound slots, for one native fan-out.

    `exclude` is the tag of the sender's user: a message to everyone skips
    the sender's own sessions in the library, so the cached array of every
    session serves every sender.
    """

    __slots__ = ("count", "exclude", "handles")

    def __init__(self, handles: Any, count: int, exclude: int) -> None:
        self.handles = handles
        self.count = count
        self.exclude = exclude


_NOBODY = Targets(native.NULL, 0, 0)
_CACHED_SENDERS = 256  # encoded "everyone but X" lists kept between roster changes


class Route(NamedTuple):
    """Where one `send` goes, and what its `sent` says."""

    targets: Targets  # this node's sessions
    delivered: tuple[str, ...]
    delivered_json: bytes  # `delivered`, encoded once (for `*`, once per roster)
    missing: tuple[str, ...]
    #: In a cluster: (node, the names there; None for everyone) for every other node
    #: with a recipient, and the delivered names reached only through other nodes.
    remote: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    remote_only: dict[str, tuple[str, ...]] = {}  # noqa: RUF012 - never mutated


class _Subscriber:
    __slots__ = ("ack_deadline", "outbox")

    def __init__(self, outbox: RosterOutbox) -> None:
        self.outbox = outbox
        self.ack_deadline: float | None = None


class Hub:
    """Who is online here and, in a cluster, on the other nodes; the roster and routing.

    `on_local(name, up)` is told, under the lock, when a user's first session
    on this node enters CHAT and when its last one leaves (a cluster node
    publishes it; alone, nothing listens). The other nodes' users come in
    through `remote_change`, `node_gone` and `remote_reset`. A name is
    *visible* (in rosters, a `join` when it appears, a `leave` when it goes)
    while it has a session here or on any other node.
    """

    def __init__(
        self,
        ack_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_local: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._on_local = on_local
        self._sessions: dict[str, list[Session]] = {}
        #: The other nodes' users: name -> nodes (in order of arrival), node -> names.
        self._remote: dict[str, dict[str, None]] = {}
        self._node_names: dict[str, set[str]] = {}
        self._subscribers: dict[Session, _Subscriber] = {}
        #: The subscribers with no roster frame in flight: the only ones a change is
        #: sent to at once (the others get it coalesced at their ack), so a join costs
        #: what it sends, not a pass over every connection (a login burst was O(N^2)).
        self._idle: dict[Session, _Subscriber] = {}
        self._tags: dict[str, int] = {}  # name -> its sessions' slot tag (for the fan-out)
        self._next_tag = 1
        self._everyone: Targets | None = None  # every session in CHAT, built when needed
        #: sender -> (every other name in CHAT, its JSON): a `sent` to everyone is mostly
        #: that list, the same for every message until someone joins or leaves.
        self._others: dict[str, tuple[tuple[str, ...], bytes]] = {}
        self._ack_timeout = ack_timeout
        self._clock = clock
        self._log = ChangeLog()  # every join and leave, shared by all outboxes
        self._trim_at = _TRIM_MIN
        self._closed = False  # shutdown: workers still answering frames change nothing

    def set_ack_timeout(self, seconds: float) -> None:
        """A reload (SIGHUP): roster frames sent from now on get this long for their ack."""
        with self._lock:
            self._ack_timeout = seconds

    # ---- queries ---------------------------------------------------------
    def online(self) -> list[str]:
        """Every visible name (here or on another node)."""
        with self._lock:
            return list(self._visible_names())

    def local_names(self) -> list[str]:
        """The names with a session in CHAT on this node."""
        with self._lock:
            return list(self._sessions)

    def local_targets(self, sender: str, names: list[str] | None) -> Targets:
        """This node's sessions for a message from another node: `names` (None: everyone
        but the sender's own sessions)."""
        with self._lock:
            if names is None:
                return self._everyone_but(sender)
            present = [n for n in dict.fromkeys(names) if n in self._sessions and n != sender]
            return self._targets(self._sessions_of(present)) if present else _NOBODY

    def overdue(self, now: float) -> list[Session]:
        """Sessions whose roster frame has waited longer than `--ack-timeout` for its ack."""
        with self._lock:
            return [
                s
                for s, sub in self._subscribers.items()
                if sub.ack_deadline is not None and now >= sub.ack_deadline
            ]

    # ---- state changes ---------------------------------------------------
    def subscribe(self, session: Session, name: str, auth_ok: bytes, dirty: Dirty) -> None:
        """Queue `auth_ok` and the full roster, atomically with subscribing.

        Taking the snapshot and subscribing under one lock means no join or
        leave can fall between them.
        """
        with self._lock:
            if self._closed:
                return  # the loop has sealed this buffer with bye: nothing follows it
            outbox = RosterOutbox(self._log, own=name)
            sub = self._subscribers[session] = _Subscriber(outbox)
            full = outbox.full([n for n in self._visible_names() if n != name])
            self._queue(session, sub, full, dirty, prefix=auth_ok)

    def ack_roster(self, session: Session, seq: int, entering: bool, dirty: Dirty) -> None:
        """Take a roster_ack (raises bad_request on a wrong seq); `entering`: its first one."""
        with self._lock:
            sub = self._subscribers.get(session)
            if sub is None:  # only after close_all: every other end goes through remove
                return
            delta = sub.outbox.ack(seq)
            sub.ack_deadline = None
            if delta is not None:
                self._queue(session, sub, delta, dirty)
            else:
                self._idle[session] = sub
            if entering:
                name = session.conn.user
                assert name is not None
                sessions = self._sessions.setdefault(name, [])
                sessions.append(session)
                tag = self._tags.get(name)
                if tag is None:
                    tag = self._tags[name] = self._next_tag
                    self._next_tag = self._next_tag % 0xFFFFFFFF + 1
                session.out.set_tag(tag)
                self._everyone = None
                self._others.clear()
                if len(sessions) == 1:
                    if self._on_local is not None:
                        self._on_local(name, True)
                    if name not in self._remote:  # not already visible through another node
                        self._announce(name, True, dirty)

    def remove(self, session: Session, dirty: Dirty) -> bool:
        """Take `session` out for good (idempotent). True when its user's last session left."""
        with self._lock:
            if self._subscribers.pop(session, None) is None:
                return False
            self._idle.pop(session, None)
            name = session.conn.user
            sessions = self._sessions.get(name or "")
            if not sessions or session not in sessions:
                return False
            sessions.remove(session)
            self._everyone = None
            self._others.clear()
            if sessions:
                return False
            del self._sessions[name or ""]
            del self._tags[name or ""]
            if self._on_local is not None:
                self._on_local(name or "", False)
            if name in self._remote:  # still visible through another node
                return False
            self._announce(name or "", False, dirty)
            return True

    def close_all(self) -> None:
        """Shutdown: everyone goes at once, so no leave deltas are computed.

        Workers may still be answering frames (a login, a roster_ack) when it
        runs; from here on those change nothing.
        """
        with self._lock:
            self._closed = True
            self._subscribers.clear()
            self._idle.clear()
            self._sessions.clear()
            self._tags.clear()
            self._remote.clear()
            self._node_names.clear()
            self._everyone = None
            self._others.clear()

    # ---- the other nodes (a cluster node's subscriber thread) -----------------
    def remote_change(self, node: str, name: str, up: bool, dirty: Dirty) -> None:
        """`name` got its first session on `node`, or lost its last one there."""
        with self._lock:
            if not self._closed:
                (self._remote_up if up else self._remote_down)(node, name, dirty)

    def node_gone(self, node: str, dirty: Dirty) -> None:
        """`node` stopped (its heartbeat expired): its users are gone from it."""
        with self._lock:
            for name in sorted(self._node_names.pop(node, set())):
                self._remote_down(node, name, dirty, known=False)

    def remote_reset(self, snapshot: dict[str, set[str]], dirty: Dirty) -> None:
        """Replace the picture of the other nodes (at the join, after an outage): what
        differs is announced as joins and leaves."""
        with self._lock:
            if self._closed:
                return
            for node in list(self._node_names):
                for name in sorted(self._node_names[node] - snapshot.get(node, set())):
                    self._remote_down(node, name, dirty)
            for node, names in snapshot.items():
                for name in sorted(names - self._node_names.get(node, set())):
                    self._remote_up(node, name, dirty)

    def unreached(self, route: Route, reached: set[str]) -> tuple[str, ...]:
        """The names `route` counted delivered whose every node missed the message."""
        return tuple(
            name
            for name, nodes in route.remote_only.items()
            if not any(node in reached for node in nodes)
        )

    # ---- messaging -------------------------------------------------------
    def route(self, sender: str, to: Recipients, stamp: Callable[[Route], T]) -> tuple[Route, T]:
        """Where a `send` goes, and what `stamp(route)` made.

        `stamp` runs under the hub lock: it gives the messages their ids and
        hands them to the store there, so ids rise in routing order and a
        login's catch-up, which starts under this lock, sees every message
        that found its user offline (docs/server.md).
        """
        with self._lock:
            if to == BROADCAST:
                names, names_json = self._everyone_else(sender)
                if not self._remote:  # alone (or nobody elsewhere): the common, fast case
                    route = Route(self._everyone_but(sender), names, names_json, ())
                    return route, stamp(route)
                remote_only = {
                    n: tuple(nodes)
                    for n, nodes in self._remote.items()
                    if n != sender and n not in self._sessions
                }
                route = Route(
                    self._everyone_but(sender),
                    names,
                    names_json,
                    (),
                    tuple((node, None) for node, users in self._node_names.items() if users),
                    remote_only,
                )
                return route, stamp(route)
            delivered: list[str] = []
            missing: list[str] = []
            by_node: dict[str, list[str]] = {}
            remote_only: dict[str, tuple[str, ...]] = {}
            for name in dict.fromkeys(to):  # each name once, in the order given
                if name == sender:
                    continue
                nodes = self._remote.get(name)
                if name in self._sessions or nodes:
                    delivered.append(name)
                else:
                    missing.append(name)
                if nodes:
                    for node in nodes:
                        by_node.setdefault(node, []).append(name)
                    if name not in self._sessions:
                        remote_only[name] = tuple(nodes)
            local = [n for n in delivered if n in self._sessions]
            route = Route(
                self._targets(self._sessions_of(local)) if local else _NOBODY,
                tuple(delivered),
                encode_names(delivered),
                tuple(missing),
                tuple((node, tuple(names)) for node, names in by_node.items()),
                remote_only,
            )
            return route, stamp(route)

    # ---- lock held -------------------------------------------------------
    def _sessions_of(self, names: Iterable[str]) -> list[Session]:
        sessions = self._sessions
        return [s for n in names for s in sessions[n]]

    @staticmethod
    def _targets(sessions: list[Session], exclude: int = 0) -> Targets:
        handles = native.ffi.new("uint64_t[]", [s.out.handle for s in sessions])
        return Targets(handles, len(sessions), exclude)

    def _visible_names(self) -> Iterator[str]:
        yield from self._sessions
        yield from (n for n in self._remote if n not in self._sessions)

    def _remote_up(self, node: str, name: str, dirty: Dirty) -> None:
        nodes = self._remote.setdefault(name, {})
        if node in nodes:
            return
        visible = bool(nodes) or name in self._sessions
        nodes[node] = None
        self._node_names.setdefault(node, set()).add(name)
        self._everyone = None
        self._others.clear()
        if not visible:
            self._announce(name, True, dirty)

    def _remote_down(self, node: str, name: str, dirty: Dirty, known: bool = True) -> None:
        nodes = self._remote.get(name)
        if nodes is None or node not in nodes:
            return
        del nodes[node]
        if known:
            self._node_names.get(node, set()).discard(name)
        self._others.clear()
        if not nodes:
            del self._remote[name]
            if name not in self._sessions:
                self._announce(name, False, dirty)

    def _everyone_else(self, sender: str) -> tuple[tuple[str, ...], bytes]:
        others = self._others.get(sender)
        if others is None:
            if len(self._others) >= _CACHED_SENDERS:
                self._others.clear()
            names = tuple(n for n in self._visible_names() if n != sender)
            others = self._others[sender] = (names, encode_names(names))
        return others

    def _everyone_but(self, sender: str) -> Targets:
        """Every session in CHAT but the sender's: one array, rebuilt after a join or leave
        (a snapshot: a fan-out running on an older one is not disturbed)."""
        everyone = self._everyone
        if everyone is None:
            everyone = self._everyone = self._targets(
                [s for ss in self._sessions.values() for s in ss]
            )
        return Targets(everyone.handles, everyone.count, self._tags.get(sender, 0))

    def _announce(self, name: str, joined: bool, dirty: Dirty) -> None:
        """Log a join or leave; whoever has no roster frame in flight hears of it now."""
        self._log.append(name, joined)
        for other, sub in list(self._idle.items()):
            if sub.outbox.own != name:
                self._queue(other, sub, sub.outbox.changed(), dirty)
        if len(self._log) >= self._trim_at:
            log = self._log
            log.trim(min((s.outbox.cursor for s in self._subscribers.values()), default=log.end))
            self._trim_at = max(_TRIM_MIN, 2 * len(log))

    def _queue(
        self,
        session: Session,
        sub: _Subscriber,
        frame: Roster | None,
        dirty: Dirty,
        prefix: bytes = b"",
    ) -> None:
        if frame is None:
            return
        self._idle.pop(session, None)  # a frame in flight until its ack
        sub.ack_deadline = self._clock() + self._ack_timeout
        session.out.append(prefix + encode(frame), dirty)  # an overflow is seen at the flush
