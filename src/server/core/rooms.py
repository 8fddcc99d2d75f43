"""Rooms: who is in which, who owns it, who is invited; every rule of protocol v1.2 section 2.

`RoomBook` is the server's picture of its rooms, in memory: the hub owns it
and guards it with its lock, so a room's changes and its messages are applied
in one order, which is the order every member sees (the hub fans them out
under the same lock). Each operation checks the contract's rules and limits,
applies the change and returns what happened: the room events to fan out and
the room's new record to persist, or the error code that answers the request.
Nothing here does I/O; the hub hands the records to the store.

In a cluster the rules run on the node that was asked, on a scratch book
holding the room as Redis has it (`scratch`), and every node's book is a
replica that applies what was decided as facts (`apply_events`), each change
once, in the order of its version (cluster/rooms.py, docs/cluster.md).

Names: a room is `#` then a user name; two rooms never differ only in case,
so rooms are kept under their case-folded name and shown as created.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from chat.shared.errors import Code, RemoteProtocolError

#: Defaults of the limits (`--max-rooms-per-user`, `--max-room-members`); docs/protocol.md.
MAX_ROOMS_PER_USER = 200
MAX_ROOM_MEMBERS = 10_000
MAX_INVITES_PER_USER = 100


def fold(room: str) -> str:
    """The key a room is kept under: names that differ only in case are one room."""
    return room.lower()


@dataclass(slots=True)
class Room:
    name: str  # as created
    topic: str
    invite_only: bool
    owner: str
    created: float
    #: Members in the order they joined (the owner's successor is the earliest left).
    members: dict[str, None] = field(default_factory=dict)
    #: Invited user -> who invited them (kept until used or the room is deleted).
    invites: dict[str, str] = field(default_factory=dict)
    #: The newest message's id (0: none yet).
    last: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One room event (protocol v1.2 `room_event`) and who must hear of it besides the
    members: the affected user's sessions (`invited`, `kicked`), the leaver's (`left`,
    `deleted`)."""

    room: str
    event: str
    user: str
    ts: float
    by: str | None = None
    topic: str | None = None
    also: str | None = None
    #: `created` only: the new room's setting (a replica builds the room from the event).
    invite_only: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """What an operation did: the events, in order, and the room's record to persist
    (None with `deleted`: the room is gone with its history and invites)."""

    events: tuple[Event, ...]
    room: Room | None
    key: str
    deleted: bool = False


def _err(code: Code, msg_id: object, message: str | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(code, message, msg_id)


class RoomBook:
    """Every room of the server (or, in a cluster, every room this node has applied)."""

    def __init__(
        self,
        max_rooms_per_user: int = MAX_ROOMS_PER_USER,
        max_room_members: int = MAX_ROOM_MEMBERS,
        max_invites_per_user: int = MAX_INVITES_PER_USER,
    ) -> None:
        self.max_rooms_per_user = max_rooms_per_user
        self.max_room_members = max_room_members
        self.max_invites_per_user = max_invites_per_user
        self._rooms: dict[str, Room] = {}
        self._of_user: dict[str, dict[str, None]] = {}  # user -> folded names (member)
        self._invited: dict[str, dict[str, None]] = {}  # user -> folded names (invited)
        #: A cluster's replica: folded name -> the version of the room's record last
        #: applied (a deleted room's too, so a late fact about it is known for late).
        self.versions: dict[str, int] = {}

    # ---- loading ------------------------------------------------------------------------
    def load(self, rooms: Iterable[Room]) -> None:
        """The rooms as the store kept them (at start)."""
        for room in rooms:
            key = fold(room.name)
            self._rooms[key] = room
            for name in room.members:
                self._of_user.setdefault(name, {})[key] = None
            for name in room.invites:
                self._invited.setdefault(name, {})[key] = None

    def reset(self, rooms: Iterable[Room], versions: dict[str, int]) -> None:
        """A replica anew: every room and version as Redis has them (a node's start, Redis
        back after an outage)."""
        self._rooms.clear()
        self._of_user.clear()
        self._invited.clear()
        self.load(rooms)
        self.versions = dict(versions)

    def replace(self, key: str, room: Room | None, version: int) -> None:
        """One room as Redis has it at `version` (a replica that missed a change)."""
        self._drop(key)
        if room is not None:
            self.load([room])
        self.versions[key] = version

    def scratch(self, key: str, room: Room | None, users: Iterable[str]) -> RoomBook:
        """A book holding only `room` (as Redis has it), for a rule to run on, with what
        this book knows of `users`' other rooms and invites: the per-user limits are
        checked against this node's replica (a small race, docs/cluster.md)."""
        book = RoomBook(self.max_rooms_per_user, self.max_room_members, self.max_invites_per_user)
        for user in users:
            rooms = {k: None for k in self._of_user.get(user, ()) if k != key}
            invites = {k: None for k in self._invited.get(user, ()) if k != key}
            if rooms:
                book._of_user[user] = rooms
            if invites:
                book._invited[user] = invites
        if room is not None:
            book.load([room])
        return book

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(self._rooms.values())

    # ---- queries ----------------------------------------------------------------------------
    def get(self, room: str) -> Room | None:
        return self._rooms.get(fold(room))

    def rooms_of(self, user: str) -> list[Room]:
        """The rooms `user` is a member of, by name."""
        return sorted(
            (self._rooms[k] for k in self._of_user.get(user, ())), key=lambda r: fold(r.name)
        )

    def invites_of(self, user: str) -> list[tuple[Room, str]]:
        """(room, who invited) for each pending invite of `user`, by room name."""
        rooms = (self._rooms[k] for k in self._invited.get(user, ()))
        return sorted(((r, r.invites[user]) for r in rooms), key=lambda pair: fold(pair[0].name))

    def visible_to(self, user: str) -> list[Room]:
        """`room_list`: every public room, and every room `user` is in or invited to."""
        keys = set(self._of_user.get(user, ())) | set(self._invited.get(user, ()))
        rooms = [r for k, r in self._rooms.items() if not r.invite_only or k in keys]
        return sorted(rooms, key=lambda r: (fold(r.name), r.name))

    def member_room(self, user: str, room: str, msg_id: object = None) -> Room:
        """The room, for a request only members may make (send, history, topic, leave,
        invite, read); raises the contract's error otherwise: `no_such_room` (also for an
        invite-only room the user is not invited to: its existence is not told), else
        `not_member`."""
        r = self._rooms.get(fold(room))
        if r is None:
            raise _err(Code.NO_SUCH_ROOM, msg_id)
        if user not in r.members:
            if r.invite_only and user not in r.invites:
                raise _err(Code.NO_SUCH_ROOM, msg_id)
            raise _err(Code.NOT_MEMBER, msg_id)
        return r

    # ---- operations (each: the events and the record, or RemoteProtocolError) ----------------
    def create(
        self, user: str, room: str, topic: str, invite_only: bool, now: float, msg_id: object
    ) -> Change:
        key = fold(room)
        if key in self._rooms:
            raise _err(Code.ROOM_EXISTS, msg_id)
        self._check_room_count(user, msg_id)
        r = Room(room, topic, invite_only, user, now)
        r.members[user] = None
        self._rooms[key] = r
        self._of_user.setdefault(user, {})[key] = None
        event = Event(r.name, "created", user, now, topic=topic, invite_only=invite_only)
        return Change((event,), r, key)

    def join(self, user: str, room: str, now: float, msg_id: object) -> Change:
        key = fold(room)
        r = self._rooms.get(key)
        if r is None or (r.invite_only and user not in r.invites and user not in r.members):
            raise _err(Code.NO_SUCH_ROOM, msg_id)
        if user in r.members:
            return Change((), None, key)  # already a member: ok, nothing happens
        if len(r.members) >= self.max_room_members:
            raise _err(Code.NOT_ALLOWED, msg_id, f"{r.name} is full ({self.max_room_members})")
        self._check_room_count(user, msg_id)
        self._uninvite(r, key, user)
        r.members[user] = None
        self._of_user.setdefault(user, {})[key] = None
        return Change((Event(r.name, "joined", user, now),), r, key)

    def leave(self, user: str, room: str, now: float, msg_id: object) -> Change:
        r = self.member_room(user, room, msg_id)
        return self._without(r, user, now, Event(r.name, "left", user, now, also=user))

    def kick(self, user: str, room: str, target: str, now: float, msg_id: object) -> Change:
        r = self.member_room(user, room, msg_id)
        if r.owner != user:
            raise _err(Code.NOT_ALLOWED, msg_id, "only the room's owner may kick")
        if target == user:
            raise _err(Code.BAD_REQUEST, msg_id, "kick yourself: leave the room instead")
        if target not in r.members:
            raise _err(Code.NOT_MEMBER, msg_id, f"{target} is not a member of {r.name}")
        event = Event(r.name, "kicked", target, now, by=user, also=target)
        return self._without(r, target, now, event)

    def invite(
        self, user: str, room: str, target: str, registered: bool, now: float, msg_id: object
    ) -> Change:
        r = self.member_room(user, room, msg_id)
        if not registered:
            raise _err(Code.NO_SUCH_USER, msg_id)
        key = fold(r.name)
        if target in r.members:
            raise _err(Code.BAD_REQUEST, msg_id, f"{target} is a member of {r.name} already")
        pending = self._invited.get(target, {})
        if key not in pending and len(pending) >= self.max_invites_per_user:
            raise _err(
                Code.NOT_ALLOWED, msg_id, f"{target} has {self.max_invites_per_user} invites"
            )
        r.invites[target] = user
        self._invited.setdefault(target, {})[key] = None
        return Change((Event(r.name, "invited", target, now, by=user, also=target),), r, key)

    def set_topic(self, user: str, room: str, topic: str, now: float, msg_id: object) -> Change:
        r = self.member_room(user, room, msg_id)
        r.topic = topic
        event = Event(r.name, "topic", user, now, by=user, topic=topic)
        return Change((event,), r, fold(r.name))

    def remove_user(self, user: str, now: float) -> list[Change]:
        """An account deleted (v1.2 section 7): it leaves every room (ownership rules as for
        a leave) and its invites go."""
        keys = [*self._of_user.get(user, ()), *self._invited.get(user, ())]
        changes = [self.remove_user_from(user, key, now) for key in dict.fromkeys(keys)]
        return [c for c in changes if c.room is not None or c.events]

    def remove_user_from(self, user: str, room: str, now: float) -> Change:
        """A deleted account out of one room: a member leaves it (ownership rules as for a
        leave), an invite goes; nothing when it is neither (a cluster's scratch book holds
        only this room)."""
        key = fold(room)
        r = self._rooms.get(key)
        if r is None:
            return Change((), None, key)
        if user in r.members:
            return self._without(r, user, now, Event(r.name, "left", user, now))
        if user in r.invites:
            r.invites.pop(user, None)
            self._uninvite_key(user, key)
            return Change((), r, key)
        return Change((), None, key)

    def posted(self, room: Room, msg_id: int) -> None:
        """A message to the room was given this id (the `last` of the `rooms` frame)."""
        if msg_id > room.last:
            room.last = msg_id

    # ---- a replica: facts, in the order of their versions ------------------------------------
    def apply_events(self, key: str, version: int, events: Iterable[Event]) -> bool:
        """A change decided elsewhere (or here), as facts: applied once, and only when
        `version` is newer than what this book has of the room; no rule is checked (they
        were, where it was decided). False: already applied, or older."""
        if version <= self.versions.get(key, 0):
            return False
        self.versions[key] = version
        for event in events:
            self._fact(key, event)
        return True

    def _fact(self, key: str, e: Event) -> None:
        kind, user = e.event, e.user
        if kind == "created":
            self._drop(key)
            r = Room(e.room, e.topic or "", e.invite_only, user, e.ts)
            r.members[user] = None
            self._rooms[key] = r
            self._of_user.setdefault(user, {})[key] = None
            return
        r = self._rooms.get(key)
        if r is None:
            return
        if kind == "joined":
            self._uninvite(r, key, user)
            r.members[user] = None
            self._of_user.setdefault(user, {})[key] = None
        elif kind in ("left", "kicked"):
            r.members.pop(user, None)
            self._unmember(user, key)
        elif kind == "invited":
            r.invites[user] = e.by or ""
            self._invited.setdefault(user, {})[key] = None
        elif kind == "topic":
            r.topic = e.topic or ""
        elif kind == "owner":
            r.owner = user
        elif kind == "deleted":
            self._drop(key)

    def _drop(self, key: str) -> None:
        r = self._rooms.pop(key, None)
        if r is None:
            return
        for member in r.members:
            self._unmember(member, key)
        for invited in r.invites:
            self._uninvite_key(invited, key)

    def _unmember(self, user: str, key: str) -> None:
        mine = self._of_user.get(user)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._of_user[user]

    # ---- parts ------------------------------------------------------------------------------
    def _without(self, r: Room, user: str, now: float, event: Event) -> Change:
        key = fold(r.name)
        del r.members[user]
        mine = self._of_user.get(user)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._of_user[user]
        if not r.members:  # the last one: the room goes, with its history and invites
            del self._rooms[key]
            for invited in r.invites:
                self._uninvite_key(invited, key)
            gone = Event(r.name, "deleted", user, now, also=user)
            return Change((event, gone), None, key, deleted=True)
        events = [event]
        if r.owner == user:  # the earliest to have joined among those left
            r.owner = next(iter(r.members))
            events.append(Event(r.name, "owner", r.owner, now))
        return Change(tuple(events), r, key)

    def _uninvite(self, r: Room, key: str, user: str) -> None:
        if r.invites.pop(user, None) is not None:
            self._uninvite_key(user, key)

    def _uninvite_key(self, user: str, key: str) -> None:
        pending = self._invited.get(user)
        if pending is not None:
            pending.pop(key, None)
            if not pending:
                del self._invited[user]

    def _check_room_count(self, user: str, msg_id: object) -> None:
        if len(self._of_user.get(user, ())) >= self.max_rooms_per_user:
            raise _err(
                Code.NOT_ALLOWED, msg_id, f"you are in {self.max_rooms_per_user} rooms already"
            )
