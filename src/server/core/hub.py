"""Who is online here, the roster that follows from it, and the snapshot a send routes on.

The hub lock guards everything here: `_sessions` (name -> that user's
sessions in CHAT on this node, in arrival order), `_subscribers` (every user
that got its full roster, ROSTER and CHAT; their roster cursors and ack
deadlines live in `User` but are guarded by this lock), `_elsewhere` (names
the presence says are online on other nodes) and the roster change log they
share. A name is *visible* (in rosters, a `join` when it appears, a `leave`
when it goes) while it has a session here or elsewhere.

What is held under the lock, and nothing else (docs/server.md, "Locking
rules"): reading and changing these tables, appending roster frames to
slots, the route's plan over a snapshot (a pure function), handing the
messages of a send to the store's queue and queueing a presence
announcement (both appends). No I/O, no waiting, no callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from chat.server.core import native, route
from chat.server.core.desk import Relay, RoomDesk
from chat.server.core.presence import NoPresence, Presence
from chat.server.core.rooms import Event, Room, RoomBook
from chat.server.core.route import NOBODY, Plan, Targets
from chat.server.core.user import User
from chat.server.store.seam import Store
from chat.shared.errors import Code
from chat.shared.features import ECHO, ROOMS
from chat.shared.messages import BROADCAST, Msg, MsgId, Recipients, Roster, encode, encode_names
from chat.shared.requests import Request
from chat.shared.roster import ChangeLog, RosterOutbox

_TRIM_MIN = 1024  # roster log entries before the first trim
_CACHED_SENDERS = 256  # encoded "everyone but X" lists kept between roster changes

#: The thread's tick: every append through it is sent at the end of the tick.
Tick = native.Tick | None


class Storm:
    """Tells a burst of roster changes from the ordinary trickle, and how long to gather.

    More than `threshold` changes within `span` seconds is a burst; its window grows with
    the rate (0.05 s, up to 0.5 s at thousands of changes a second), so a storm of 10,000
    logins costs each subscriber a delta per window, not one per login. An ordinary join
    (below the threshold) is told at once, as before.
    """

    __slots__ = ("_count", "_since", "span", "threshold", "window")

    def __init__(self, threshold: int = 16, span: float = 0.1) -> None:
        self.threshold = threshold
        self.span = span
        self.window = 0.05
        self._since = 0.0
        self._count = 0

    def burst(self, now: float) -> bool:
        if now - self._since > self.span:
            self._since, self._count = now, 0
        self._count += 1
        if self._count <= self.threshold:
            return False
        rate = self._count / max(now - self._since, 1e-3)
        self.window = min(0.5, max(0.05, rate / 10_000))
        return True


class Hub:
    def __init__(
        self,
        ack_timeout: float,
        presence: Presence,
        store: Store,
        table: native.OutTable,
        clock: Callable[[], float] = time.monotonic,
        book: RoomBook | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._presence = presence
        self._alone = isinstance(presence, NoPresence)  # no other node: no presence to ask
        #: Rooms, read markers and typing: they work under this lock (core/desk.py).
        self.desk = RoomDesk(self, store, table, book, None if self._alone else self._nodes_of)
        self._store = store
        self._sessions: dict[str, list[User]] = {}
        self._elsewhere: set[str] = set()
        self._subscribers: set[User] = set()
        #: The subscribers with no roster frame in flight: the only ones a change is
        #: sent to at once (the others get it coalesced at their ack), so a join costs
        #: what it sends, not a pass over every connection (a login burst was O(N^2)).
        self._idle: set[User] = set()
        self._tags: dict[str, int] = {}  # name -> its sessions' slot tag (for the fan-out)
        self._next_tag = 1
        self._everyone: Targets | None = None  # every session in CHAT, built when needed
        #: sender -> (every other visible name, its JSON): a `sent` to everyone is mostly
        #: that list, the same for every message until someone joins or leaves.
        self._others: dict[str, tuple[tuple[str, ...], bytes]] = {}
        #: sender -> (the other nodes it was made for, the plan of a send to "*"): the same
        #: for every message until someone joins or leaves (cleared with `_others`).
        self._plans: dict[str, tuple[tuple[str, ...], Plan]] = {}
        self._ack_timeout = ack_timeout
        self._clock = clock
        self._log = ChangeLog()  # every join and leave, shared by all outboxes
        #: Login storms: a burst of roster changes is told once per window (see `_announce`).
        self._storm = Storm()
        self._flush_due = False
        self._schedule: Callable[[float, Callable[[], None]], None] | None = None
        self._ticks: Any = None
        self._trim_at = _TRIM_MIN
        self._closed = False  # shutdown: workers still answering frames change nothing

    def windows(self, schedule: Callable[[float, Callable[[], None]], None], ticks: Any) -> None:
        """How a burst's window is flushed later: a timer (`Deadlines.after`) and the ticks
        of the thread it runs on. Without them every change is told at once."""
        self._schedule = schedule
        self._ticks = ticks

    def set_ack_timeout(self, seconds: float) -> None:
        """A reload (SIGHUP): roster frames sent from now on get this long for their ack."""
        with self._lock:
            self._ack_timeout = seconds

    # ---- queries -----------------------------------------------------------------------
    def online(self) -> list[str]:
        """Every visible name (here or on another node)."""
        with self._lock:
            return list(self._visible())

    def local_names(self) -> list[str]:
        """The names with a session in CHAT on this node."""
        with self._lock:
            return list(self._sessions)

    def sessions_of(self, name: str) -> list[User]:
        """`name`'s sessions in CHAT on this node (the hub lock is held: the desk's use)."""
        return self._sessions.get(name, [])

    # ---- rooms, markers, typing (the desk, under this lock) ---------------------------------
    def room_request(self, user: User, request: Request, registered: bool, tick: Tick) -> bytes:
        with self._lock:
            return self.desk.apply(user, request, registered, tick)

    def room_list(self, user: User, msg_id: MsgId) -> bytes:
        with self._lock:
            return self.desk.room_list(user, msg_id)

    def room_send(
        self, user: User, room: str, texts: list[str], now: float, tick: Tick, msg_id: MsgId
    ) -> tuple[Msg, ...] | None:
        with self._lock:
            return self.desk.route_room(user, room, texts, now, tick, msg_id)

    def check_member(self, user: User, room: str, msg_id: MsgId | None) -> None:
        with self._lock:
            self.desk.member_room(user, room, msg_id)

    def read(self, user: User, peer: str, upto: int, tick: Tick) -> bool:
        """True when the marker moved (a cluster tells the user's other nodes)."""
        with self._lock:
            if peer.startswith("#"):
                self.desk.member_room(user, peer, None)
            return self.desk.read(user, peer, upto, tick)

    def typing(self, user: User, to: str | tuple[str, ...], state: str, tick: Tick) -> Relay | None:
        with self._lock:
            return self.desk.typing(user, to, state, tick)

    # ---- a cluster: rooms as Redis decides them, and what other nodes relay ------------------
    def room_scratch(self, key: str, room: Room | None, users: Iterable[str]) -> RoomBook:
        """A book of `room` as Redis has it, with this replica's per-user counts."""
        with self._lock:
            return self.desk.book.scratch(key, room, users)

    def rooms_reset(self, rooms: list[Room], versions: dict[str, int]) -> None:
        with self._lock:
            self.desk.book.reset(rooms, versions)

    def room_replace(self, key: str, room: Room | None, version: int) -> None:
        with self._lock:
            self.desk.book.replace(key, room, version)

    def room_version(self, key: str) -> int:
        with self._lock:
            return self.desk.book.versions.get(key, 0)

    def room_changed(self, key: str, version: int, events: Sequence[Event], tick: Tick) -> bool:
        with self._lock:
            return self.desk.changed_elsewhere(key, version, events, tick)

    def room_posted(
        self, sender: str, room: str, last: int, frames: bytes, skip: int, tick: Tick
    ) -> Code | None:
        with self._lock:
            return self.desk.posted_elsewhere(sender, room, last, frames, skip, tick)

    def read_elsewhere(self, name: str, peer: str, upto: int, tick: Tick) -> None:
        with self._lock:
            self.desk.read_elsewhere(name, peer, upto, tick)

    def typing_elsewhere(
        self, sender: str, names: Sequence[str], room: str | None, frame: bytes, tick: Tick
    ) -> None:
        with self._lock:
            self.desk.typing_elsewhere(sender, names, room, frame, tick)

    def echo_targets(self, sender: str) -> Targets:
        """The sender's sessions here granted `echo` (its message came from another node)."""
        with self._lock:
            pairs = [
                (sender, u.out.handle)
                for u in self._sessions.get(sender, ())
                if ECHO in u.conn.features
            ]
        return Targets.of(pairs) if pairs else NOBODY

    def _nodes_of(self, names: Iterable[str]) -> tuple[str, ...]:
        """The other nodes where any of `names` has a session (presence lock, after ours)."""
        nodes_of = self._presence.nodes_of
        found: dict[str, None] = {}
        for name in names:
            for node in nodes_of(name):
                found[node] = None
        return tuple(found)

    def remove_account(self, name: str, tick: Tick) -> None:
        """An account deleted (v1.2 section 7): it leaves every room by the ownership rules,
        its invites go, the members are told (any thread: `tick` is its own)."""
        with self._lock:
            desk = self.desk
            desk.apply_changes(desk.book.remove_user(name, time.time()), tick)

    def rooms_touching(self, name: str) -> list[str]:
        """The rooms `name` is a member of or invited to (a deleted account leaves them)."""
        with self._lock:
            book = self.desk.book
            names = [r.name for r in book.rooms_of(name)]
            return names + [r.name for r, _ in book.invites_of(name) if r.name not in names]

    def markers_loaded(self, name: str, marks: dict[str, int]) -> None:
        with self._lock:
            self.desk.markers_loaded(name, marks)

    def rooms_of(self, name: str) -> list[str]:
        with self._lock:
            return [r.name for r in self.desk.book.rooms_of(name)]

    def overdue(self, now: float) -> list[User]:
        """Users whose roster frame has waited longer than `--ack-timeout` for its ack."""
        with self._lock:
            return [
                u for u in self._subscribers if u.ack_deadline is not None and now >= u.ack_deadline
            ]

    # ---- a send ------------------------------------------------------------------------------
    def route(
        self,
        user: User,
        to: Recipients,
        texts: list[str],
        registered: frozenset[str],
        now: float,
    ) -> tuple[Plan, tuple[Msg, ...] | None, Future | None, Targets]:
        """Where a send goes (the route's plan on a snapshot taken now), and its messages,
        stamped with their ids and handed to the store in the same critical section (a
        queue append that never waits): a login's catch-up, which starts under this lock,
        therefore sees every message that found its user offline (docs/server.md). The
        receipt tells when the copies are durable, when the plan needs that (queued names,
        other nodes). No messages (None) when the store can give no ids now. The last of
        the four: the sender's other sessions granted `echo` (v1.2 section 4)."""
        store, presence, sender = self._store, self._presence, user.name
        with self._lock:
            if to == BROADCAST:
                nodes = () if self._alone else presence.nodes()
                cached = self._plans.get(sender)
                if cached is not None and cached[0] == nodes:
                    plan = cached[1]
                else:
                    names, names_json = self._everyone_else(sender)
                    plan = route.plan_everyone(
                        sender, self._everyone_but(sender), names, names_json, nodes
                    )
                    if len(self._plans) >= _CACHED_SENDERS:
                        self._plans.clear()
                    self._plans[sender] = (nodes, plan)
            else:
                sessions = self._sessions
                local = {n: [u.out.handle for u in sessions[n]] for n in to if n in sessions}
                elsewhere = (
                    {} if self._alone else {n: ns for n in to if (ns := presence.nodes_of(n))}
                )
                plan = route.plan(sender, to, local, elsewhere, registered)
            keep = (plan.named, plan.queued) if plan.stores else None
            durable = keep is not None and bool(plan.queued or plan.nodes)
            msgs, receipt = store.stamp(sender, to, texts, now, keep, durable)
            echo = NOBODY
            if len(self._sessions.get(sender, ())) > 1:
                echo = Targets.of(
                    [
                        (sender, u.out.handle)
                        for u in self._sessions[sender]
                        if u is not user and ECHO in u.conn.features
                    ]
                )
            return plan, msgs, receipt, echo

    def local_targets(self, sender: str, names: list[str] | None) -> Targets:
        """This node's sessions for a message from another node: `names` (None: everyone
        but the sender's own sessions)."""
        with self._lock:
            if names is None:
                return self._everyone_but(sender)
            sessions = self._sessions
            return Targets.of(
                [
                    (n, u.out.handle)
                    for n in dict.fromkeys(names)
                    if n != sender and n in sessions
                    for u in sessions[n]
                ]
            )

    # ---- roster ----------------------------------------------------------------------------
    def subscribe(self, user: User, auth_ok: bytes, tick: Tick) -> None:
        """Queue `auth_ok` and the full roster, atomically with subscribing.

        Taking the snapshot and subscribing under one lock means no join or
        leave can fall between them.
        """
        name = user.name
        with self._lock:
            if self._closed:
                return  # the loop has sealed this buffer with bye: nothing follows it
            user.roster = RosterOutbox(self._log, own=name)
            self._subscribers.add(user)
            # `_visible()` as C builds it: in a reconnect storm each login's snapshot holds
            # thousands of names, and a generator pass per name was a fifth of its CPU.
            others = list(self._sessions)
            if self._elsewhere:
                others += [n for n in self._elsewhere if n not in self._sessions]
            if name in self._sessions or name in self._elsewhere:
                others.remove(name)  # its own other sessions: never told of itself
            self._queue(user, user.roster.full(others), tick, prefix=auth_ok)

    def ack_roster(self, user: User, seq: int, entering: bool, tick: Tick) -> bytes:
        """Take a roster_ack (raises bad_request on a wrong seq); `entering`: its first one,
        whose answer is the `rooms` frame when the session was granted `rooms` (taken as it
        enters, under the lock: every room event after it reaches the session after it)."""
        with self._lock:
            outbox = user.roster
            if outbox is None or user not in self._subscribers:
                return b""  # only after close_all: every other end goes through remove
            delta = outbox.ack(seq)
            user.ack_deadline = None
            if delta is not None:
                self._queue(user, delta, tick)
            else:
                self._idle.add(user)
            if not entering:
                return b""
            self._enter(user, tick)
            return self.desk.rooms_frame(user) if ROOMS in user.conn.features else b""

    def remove(self, user: User, tick: Tick) -> bool:
        """Take `user` out for good (idempotent). True when its name's last session left."""
        with self._lock:
            if user not in self._subscribers:
                return False
            self._subscribers.discard(user)
            self._idle.discard(user)
            name = user.name
            sessions = self._sessions.get(name)
            if not sessions or user not in sessions:
                return False
            sessions.remove(user)
            self._everyone = None
            self._others.clear()
            self._plans.clear()
            self.desk.sessions_changed(name)
            if sessions:
                return False
            del self._sessions[name]
            del self._tags[name]
            self.desk.left(name)
            self._presence.departed(name)
            if name in self._elsewhere:  # still visible through another node
                return False
            self._announce(name, False, tick)
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
            self._elsewhere.clear()
            self._everyone = None
            self._others.clear()
            self._plans.clear()

    # ---- the other nodes (PresenceListener: the presence's thread) ------------------------
    def elsewhere(self, name: str, visible: bool, tick: Tick) -> None:
        with self._lock:
            if self._closed or (name in self._elsewhere) == visible:
                return
            if visible:
                self._elsewhere.add(name)
            else:
                self._elsewhere.discard(name)
            self._others.clear()
            self._plans.clear()
            if name not in self._sessions:
                self._announce(name, visible, tick)

    def elsewhere_reset(self, names: set[str], tick: Tick) -> None:
        with self._lock:
            if self._closed:
                return
            gone, came = self._elsewhere - names, names - self._elsewhere
            self._elsewhere = set(names)
            self._others.clear()
            self._plans.clear()
            for name in sorted(gone):
                if name not in self._sessions:
                    self._announce(name, False, tick)
            for name in sorted(came):
                if name not in self._sessions:
                    self._announce(name, True, tick)

    # ---- lock held ---------------------------------------------------------------------------
    def _enter(self, user: User, tick: Tick) -> None:
        """`user` enters CHAT: online from now on; its name's first session is a join."""
        name = user.name
        sessions = self._sessions.setdefault(name, [])
        sessions.append(user)
        tag = self._tags.get(name)
        if tag is None:
            tag = self._tags[name] = self._next_tag
            self._next_tag = self._next_tag % 0xFFFFFFFF + 1
        user.out.set_tag(tag)
        self._everyone = None
        self._others.clear()
        self._plans.clear()
        self.desk.sessions_changed(name)
        if len(sessions) == 1:
            self._presence.arrived(name)
            if name not in self._elsewhere:  # not already visible through another node
                self._announce(name, True, tick)

    def _visible(self) -> Iterator[str]:
        yield from self._sessions
        yield from (n for n in self._elsewhere if n not in self._sessions)

    def _everyone_else(self, sender: str) -> tuple[tuple[str, ...], bytes]:
        others = self._others.get(sender)
        if others is None:
            if len(self._others) >= _CACHED_SENDERS:
                self._others.clear()
            names = tuple(n for n in self._visible() if n != sender)
            others = self._others[sender] = (names, encode_names(names))
        return others

    def _everyone_but(self, sender: str) -> Targets:
        """Every session in CHAT but the sender's: one array, rebuilt after a join or leave
        (a snapshot: a fan-out running on an older one is not disturbed)."""
        everyone = self._everyone
        if everyone is None:
            pairs = [(n, u.out.handle) for n, us in self._sessions.items() for u in us]
            everyone = self._everyone = Targets.of(pairs) if pairs else NOBODY
        tag = self._tags.get(sender, 0)
        return everyone.but(tag, len(self._sessions.get(sender, ())) if tag else 0)

    def _announce(self, name: str, joined: bool, tick: Tick) -> None:
        """Log a join or leave; whoever has no roster frame in flight hears of it now, or,
        during a burst of changes (a login storm, a node's users coming back), at the next
        flush of the burst's window: one delta per subscriber per window instead of one per
        change (issue "6 of 6": the roster's work per login O(1) during a burst)."""
        self._log.append(name, joined)
        if self._storm.burst(self._clock()):
            if not self._flush_due and self._schedule is not None:
                self._flush_due = True
                self._schedule(self._storm.window, self._flush_window)
                return
            if self._flush_due:
                return
        self._tell_idle(tick)
        if len(self._log) >= self._trim_at:
            log = self._log
            cursors = (u.roster.cursor for u in self._subscribers if u.roster is not None)
            log.trim(min(cursors, default=log.end))
            self._trim_at = max(_TRIM_MIN, 2 * len(log))

    def _tell_idle(self, tick: Tick) -> None:
        for other in list(self._idle):
            outbox = other.roster
            if outbox is not None:
                self._queue(other, outbox.changed(), tick)

    def _flush_window(self) -> None:
        """The burst's window is over (the timer's thread): every idle subscriber gets one
        delta with everything the window changed."""
        ticks = self._ticks
        with self._lock:
            self._flush_due = False
            if not self._closed and ticks is not None:
                self._tell_idle(ticks.current())
        if ticks is not None:
            ticks.flush()

    def _queue(self, user: User, frame: Roster | None, tick: Tick, prefix: bytes = b"") -> None:
        if frame is None:
            return
        self._idle.discard(user)  # a frame in flight until its ack
        user.ack_deadline = self._clock() + self._ack_timeout
        user.out.append(prefix + encode(frame), tick)  # an overflow is seen at the flush
