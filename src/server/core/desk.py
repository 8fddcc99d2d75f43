"""Rooms, read markers and typing at work: protocol v1.2 sections 2, 3 and 5, under the hub lock.

The desk applies what a user asks of a room (create, join, leave, invite,
kick, topic), routes a message to a room, keeps each online user's read
markers and relays typing notices. It works under the hub's lock, and fans
out room events and room messages while holding it: that one order is the
order every member sees, so after a member's `left` or `kicked` no message of
that room reaches it, and events and messages of a room never overtake each
other (the contract's section 2). The rules themselves are the room book's
(core/rooms.py); the desk adds the sessions, the slots and the store.

Who gets what: room events and messages go to every session of every member
that was granted `rooms` (a room message not to the sending connection);
`read` goes to the user's other `read` sessions; `typing` to the recipients'
`typing` sessions, never to the sender's own.

In a cluster (protocol v1.2 section 10) the rules are run in Redis by the
rooms' broker (cluster/rooms.py, with `run_rule` on a scratch book), and this
desk's book is a replica: every node applies the decided changes and the
room messages in the rooms channel's one order (`changed_elsewhere`,
`posted_elsewhere`), under the same lock, with the same fan-out. Markers and
typing that other nodes relay arrive through `read_elsewhere` and
`typing_elsewhere`; what must go to other nodes is returned to the caller,
which hands it to the broker outside the lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chat.server.core import native
from chat.server.core.rooms import Change, Event, Room, RoomBook, fold
from chat.server.core.user import User
from chat.server.store.seam import Store
from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.features import READ, ROOMS, TYPING
from chat.shared.messages import Msg, MsgId, encode, encode_msgs, valid_name
from chat.shared.notices import (
    Invitation,
    Ok,
    ReadNotice,
    RoomEvent,
    RoomInfo,
    RoomList,
    Rooms,
    RoomState,
    TypingNotice,
)
from chat.shared.requests import (
    Request,
    RoomCreate,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomTopic,
)

if TYPE_CHECKING:
    from chat.server.core.hub import Hub

#: Typing notices relayed per sender and conversation in any one second (v1.2 section 5).
TYPING_PER_SECOND = 2
_TYPING_KEYS = 100_000  # windows kept at most (the least recently used go first)


@dataclass(frozen=True, slots=True)
class Relay:
    """A typing notice for other nodes: there, the `typing` sessions of `names`, or of the
    members of `room`, get `frame`."""

    nodes: tuple[str, ...]
    names: tuple[str, ...]
    room: str | None
    frame: bytes


@dataclass(frozen=True, slots=True)
class AccountGone:
    """Not a peer's request: a deleted account leaves one room (member or invited), by the
    ownership rules of a leave (v1.2 section 7). A cluster runs it in Redis as it runs the
    peer's room requests (cluster/rooms.py), so every node's replica applies it in the
    room's one order."""

    room: str
    id: None = None
    type: str = "account_gone"


def run_rule(
    book: RoomBook, name: str, request: Request | AccountGone, registered: bool, now: float
) -> Change:
    """The room book's rule for one room request of `name` (raises the contract's error):
    the server alone's book, or in a cluster a scratch book of the room as Redis has it."""
    match request:
        case RoomCreate(msg_id, room, topic, invite_only):
            return book.create(name, room, topic, invite_only, now, msg_id)
        case RoomJoin(msg_id, room):
            return book.join(name, room, now, msg_id)
        case RoomLeave(msg_id, room):
            return book.leave(name, room, now, msg_id)
        case RoomInvite(msg_id, room, target):
            return book.invite(name, room, target, registered, now, msg_id)
        case RoomKick(msg_id, room, target):
            return book.kick(name, room, target, now, msg_id)
        case RoomTopic(msg_id, room, topic):
            return book.set_topic(name, room, topic, now, msg_id)
        case AccountGone(room):
            return book.remove_user_from(name, room, now)
    raise RemoteProtocolError(Code.BAD_REQUEST, msg_id=getattr(request, "id", None))


class RoomDesk:
    def __init__(
        self,
        hub: Hub,
        store: Store,
        table: native.OutTable,
        book: RoomBook | None = None,
        nodes_of: Callable[[Iterable[str]], tuple[str, ...]] | None = None,
    ) -> None:
        """`nodes_of`: a cluster's other nodes where any of some names has a session (None:
        a server alone)."""
        self._hub = hub
        self._nodes_of = nodes_of
        self._store = store
        self._table = table
        self.book = book if book is not None else RoomBook()
        #: Each online user's read markers: peer -> how far read (loaded at its login).
        self._markers: dict[str, dict[str, int]] = {}
        self._typing: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._clock = time.monotonic
        #: folded room name -> its members' `rooms` sessions as one native array, built at
        #: the room's first message after a change (the fan-out of a busy room costs one
        #: native call, as a message to everyone does).
        self._arrays: dict[str, tuple[object, int]] = {}

    # ---- hub lock held ---------------------------------------------------------------------
    def rooms_frame(self, user: User) -> bytes:
        """The `rooms` frame of a session entering CHAT (taken with its entering, under the
        lock: every room event after it reaches the session after this frame)."""
        name = user.name
        book = self.book
        rooms = tuple(
            RoomState(r.name, r.topic, r.invite_only, r.owner, tuple(sorted(r.members)), r.last)
            for r in book.rooms_of(name)
        )
        invites = tuple(Invitation(r.name, by) for r, by in book.invites_of(name))
        return encode(Rooms(rooms, invites))

    def apply(self, user: User, request: Request, registered: bool, tick: native.Tick) -> bytes:
        """A room request: its answer (`ok`, or the contract's error), its events fanned out."""
        try:
            change = run_rule(self.book, user.name, request, registered, time.time())
        except RemoteProtocolError as err:
            return user.conn.error(err)
        self._changed(change, tick)
        return user.conn.reply(Ok(request.id))  # type: ignore[union-attr]

    def apply_changes(self, changes: Iterable[Change], tick: native.Tick) -> None:
        """Changes made for the server's own reasons (an account deleted)."""
        for change in changes:
            self._changed(change, tick)

    # ---- a cluster's replica (the rooms channel's thread, hub lock held) ---------------------
    def changed_elsewhere(
        self, key: str, version: int, events: Sequence[Event], tick: native.Tick
    ) -> bool:
        """A change decided by some node (this one too), applied as facts when newer than
        the replica's, and told to this node's sessions as `_changed` tells them (Redis has
        the record already). False: already applied, or older."""
        if not self.book.apply_events(key, version, events):
            return False
        self._tell(self.book.get(key), events, tick)
        return True

    def posted_elsewhere(
        self, sender: str, room: str, last: int, frames: bytes, skip: int, tick: native.Tick
    ) -> Code | None:
        """A room's messages from the channel: the verdict every node reaches alike (the
        sender is a member in this replica, which has applied the same changes in the same
        order); when it is, fanned out to this node's members' `rooms` sessions but the
        sending connection (`skip`, on its node), and the room's `last` moved. The refusal's
        code otherwise (`not_member`, `no_such_room`)."""
        try:
            r = self.book.member_room(sender, room)
        except RemoteProtocolError as err:
            return err.code
        self.book.posted(r, last)
        self._fan(self._members(r, ROOMS), frames, tick, skip=skip)
        return None

    def read_elsewhere(self, name: str, peer: str, upto: int, tick: native.Tick) -> None:
        """A marker moved by `name`'s session on another node (that node keeps it): told to
        this node's `read` sessions of `name` when it is news here."""
        sessions = self._hub.sessions_of(name)
        if not sessions:
            return
        marks = self._markers.setdefault(name, {})
        if upto <= marks.get(peer, 0):
            return
        marks[peer] = upto
        handles = [u.out.handle for u in sessions if READ in u.conn.features]
        self._fan(handles, encode(ReadNotice(peer, upto)), tick)

    def typing_elsewhere(
        self, sender: str, names: Sequence[str], room: str | None, frame: bytes, tick: native.Tick
    ) -> None:
        """A typing notice relayed by the sender's node (which kept the rate): to this
        node's `typing` sessions of `names`, or of the room's members, never the sender's."""
        if room is not None:
            r = self.book.get(room)
            if r is None or sender not in r.members:
                return
            handles = self._members(r, TYPING, but=sender)
        else:
            sessions_of = self._hub.sessions_of
            handles = [
                u.out.handle
                for n in dict.fromkeys(names)
                if n != sender
                for u in sessions_of(n)
                if TYPING in u.conn.features
            ]
        self._fan(handles, frame, tick)

    def room_list(self, user: User, msg_id: MsgId) -> bytes:
        name = user.name
        rooms = tuple(
            RoomInfo(
                r.name,
                r.topic,
                r.invite_only,
                r.owner,
                len(r.members),
                name in r.members,
                name in r.invites,
            )
            for r in self.book.visible_to(name)
        )
        return user.conn.reply(RoomList(msg_id, rooms))

    def member_room(self, user: User, room: str, msg_id: MsgId | None) -> Room:
        """The room, if `user` may use it as a member (raises the contract's error)."""
        return self.book.member_room(user.name, room, msg_id)

    def route_room(
        self,
        user: User,
        room: str,
        texts: Sequence[str],
        now: float,
        tick: native.Tick,
        msg_id: MsgId,
    ) -> tuple[Msg, ...] | None:
        """Messages to a room: stamped, stored, fanned out to every member's `rooms`
        sessions but the sending connection, all under the lock (one order with the room's
        events). None when the store can give no ids now; the contract's error when
        `user` may not write there."""
        r = self.book.member_room(user.name, room, msg_id)
        # `to` as the sender wrote it (the contract's "that string"; a room's names differ
        # only in case, and the store files them under the folded one).
        msgs, _ = self._store.stamp(user.name, room, list(texts), now, ((), ()), False)
        if msgs is None:
            return None
        self.book.posted(r, msgs[-1].id)
        key = fold(r.name)
        cached = self._arrays.get(key)
        if cached is None:
            handles = self._members(r, ROOMS)
            cached = self._arrays[key] = (native.ffi.new("uint64_t[]", handles), len(handles))
        array, count = cached
        if count:
            blob = encode_msgs(msgs)
            self._table.fanout(tick, blob, array, count, 0, native.NULL, user.out.handle)
        return msgs

    def sessions_changed(self, name: str) -> None:
        """`name` got or lost a session here: the arrays of its rooms are built anew."""
        for r in self.book.rooms_of(name):
            self._arrays.pop(fold(r.name), None)

    def read(self, user: User, peer: str, upto: int, tick: native.Tick) -> bool:
        """A read marker moves (never back): kept, and told to the user's other `read`
        sessions (v1.2 section 3). True when it moved (a cluster tells the user's other
        nodes)."""
        name = user.name
        marks = self._markers.setdefault(name, {})
        if upto <= marks.get(peer, 0):
            return False
        marks[peer] = upto
        self._store.set_marker(name, peer, upto)
        others = [
            u.out.handle
            for u in self._hub.sessions_of(name)
            if u is not user and READ in u.conn.features
        ]
        self._fan(others, encode(ReadNotice(peer, upto)), tick)
        return True

    def markers_loaded(self, name: str, marks: dict[str, int]) -> None:
        """The markers a login read from the store (the newer of the two wins)."""
        mine = self._markers.setdefault(name, {})
        for peer, upto in marks.items():
            if upto > mine.get(peer, 0):
                mine[peer] = upto

    def left(self, name: str) -> None:
        """The user's last session left: its markers are kept by the store alone."""
        self._markers.pop(name, None)

    def typing(
        self, user: User, to: str | tuple[str, ...], state: str, tick: native.Tick
    ) -> Relay | None:
        """Relay a typing notice (at most 2 a second per sender and conversation); nothing
        is stored and nothing answers it. In a cluster, what the recipients' other nodes
        must be told (the rate is kept here, on the sender's node)."""
        name = user.name
        room: str | None = None
        if isinstance(to, str) and to.startswith("#"):  # a room
            r = self.book.member_room(name, to)
            key, sessions = fold(r.name), self._members(r, TYPING, but=name)
            to = room = r.name
            names: Sequence[str] = (
                () if self._nodes_of is None else [m for m in r.members if m != name]
            )
        else:  # one name (a string) or a list of names
            people = (to,) if isinstance(to, str) else to
            names = [n for n in dict.fromkeys(people) if n != name and valid_name(n)]
            key = ",".join(sorted(names))
            sessions = [
                u.out.handle
                for n in names
                for u in self._hub.sessions_of(n)
                if TYPING in u.conn.features
            ]
        nodes = self._nodes_of(names) if self._nodes_of is not None else ()
        if (not sessions and not nodes) or not self._within_rate(name, key):
            return None
        frame = encode(TypingNotice(name, to, state))
        if sessions:
            self._fan(sessions, frame, tick)
        if not nodes:
            return None
        return Relay(nodes, tuple(names) if room is None else (), room, frame)

    # ---- parts ----------------------------------------------------------------------------------
    def _changed(self, change: Change, tick: native.Tick) -> None:
        """Persist what changed, then tell it: to the room's members (after the change:
        a joiner hears its own join, a leaver is told apart) and to whom it concerns."""
        self._arrays.pop(change.key, None)
        r = change.room
        if r is not None or change.deleted:
            name = r.name if r is not None else change.events[-1].room
            self._store.save_room(change.key, r, name)
        self._tell(r, change.events, tick)

    def _tell(self, r: Room | None, events: Sequence[Event], tick: native.Tick) -> None:
        """Fan each event out to the room's members as they are after the change, and to
        whom it concerns (`also`) when not a member."""
        for event in events:
            frame = encode(
                RoomEvent(event.room, event.event, event.user, event.ts, event.by, event.topic)
            )
            targets = self._members(r, ROOMS) if r is not None else []
            if event.also is not None and (r is None or event.also not in r.members):
                targets += [
                    u.out.handle
                    for u in self._hub.sessions_of(event.also)
                    if ROOMS in u.conn.features
                ]
            self._fan(targets, frame, tick)

    def _members(self, room: Room, feature: str, but: str | None = None) -> list[int]:
        sessions_of = self._hub.sessions_of
        return [
            u.out.handle
            for member in room.members
            if member != but
            for u in sessions_of(member)
            if feature in u.conn.features
        ]

    def _fan(self, handles: list[int], data: bytes, tick: native.Tick, skip: int = 0) -> None:
        if not handles:
            return
        array = native.ffi.new("uint64_t[]", handles)
        self._table.fanout(tick, data, array, len(handles), 0, native.NULL, skip)

    def _within_rate(self, sender: str, conversation: str) -> bool:
        key = (sender, conversation)
        now = self._clock()
        window = self._typing.pop(key, None) or deque(maxlen=TYPING_PER_SECOND)
        self._typing[key] = window  # now the most recent key
        if len(self._typing) > _TYPING_KEYS:
            self._typing.popitem(last=False)
        if len(window) == TYPING_PER_SECOND and now - window[0] < 1.0:
            return False
        window.append(now)
        return True
