"""The rooms this user is in, as the server said (v1.2 `rooms`) and as events changed them.

Filed by `room_key` (rooms whose names differ only in case are one room); each keeps
the name as the server spells it, which is the name the client writes (a `send`, a
`read`, a `typing` to a room), so every session of the user uses one spelling.

A room joined after the login is known only by what the protocol says of it:
its `room_event`s (who joins and leaves from then on), what its members write, and
its entry in `room_list` (topic, owner, how many members). Protocol v1.2 sends the
full member list only in the `rooms` frame of a login.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.shared.messages import Invitation, RoomEvent, RoomInfo, RoomState
from chat.shared.notices import RoomEventKind as Kind
from chat.shared.rooms import room_key


@dataclass
class Room:
    name: str
    topic: str = ""
    owner: str = ""
    invite_only: bool = False
    #: Members known by name, in the order they became known.
    members: dict[str, None] = field(default_factory=dict)
    #: How many members the server counts (a `room_list`); None: `members` is the full list.
    count: int | None = None
    joined: bool = True  # we are a member (False once we left or were kicked)
    last: int = 0  # the newest message id the `rooms` frame gave

    def member_count(self) -> int:
        return self.count if self.count is not None else len(self.members)


@dataclass(frozen=True, slots=True)
class Change:
    """What one `room_event` means to the user: a line for the room's buffer, and whether
    it concerns us (we joined, left, were kicked or invited, the room is gone)."""

    text: str
    about: str  # the user it is about (for the smart filter: joins and leaves)
    me_in: bool = False  # we are now a member (our own join or creation)
    me_out: bool = False  # we are no longer one
    invited: bool = False  # we were invited (the room is not ours yet)
    quiet: bool = False  # a join or a leave: for the smart filter


@dataclass
class RoomBook:
    me: str = ""
    rooms: dict[str, Room] = field(default_factory=dict)
    invites: dict[str, Invitation] = field(default_factory=dict)

    def get(self, name: str) -> Room | None:
        return self.rooms.get(room_key(name))

    def name_of(self, name: str) -> str:
        """The server's spelling of a room (the name as given when it is not known)."""
        room = self.get(name)
        return room.name if room is not None else name

    def member_rooms(self) -> list[Room]:
        return [r for r in self.rooms.values() if r.joined]

    def load(self, rooms: tuple[RoomState, ...], invites: tuple[Invitation, ...]) -> None:
        """The `rooms` frame of a login: the whole truth, replacing what was known."""
        self.rooms = {
            room_key(r.room): Room(
                r.room, r.topic, r.owner, r.invite_only, dict.fromkeys(r.members), last=r.last
            )
            for r in rooms
        }
        self.invites = {room_key(i.room): i for i in invites}

    def listed(self, info: RoomInfo) -> None:
        """A `room_list` entry: topic, owner and count for a room we are in."""
        room = self.get(info.room)
        if room is not None:
            room.name, room.topic, room.owner = info.room, info.topic, info.owner
            room.invite_only = info.invite_only
            if len(room.members) < info.members:
                room.count = info.members
            else:
                room.count = None

    def apply(self, event: RoomEvent) -> Change:
        """One `room_event`: the book changed, and what to say about it."""
        key, me, who, by = room_key(event.room), self.me, event.user, event.by or "someone"
        room = self.rooms.get(key)
        kind = event.event
        if kind == Kind.CREATED:
            self.rooms[key] = Room(event.room, event.topic or "", who, False, {who: None})
            self.invites.pop(key, None)
            return Change(f"{who} created {event.room}", who, me_in=who == me)
        if kind == Kind.INVITED:
            if who == me:
                self.invites[key] = Invitation(event.room, by)
                return Change(
                    f"{by} invited you to {event.room} (/join {event.room})", who, invited=True
                )
            return Change(f"{by} invited {who} to {event.room}", who)
        if room is None:  # an event of a room we just joined, or a leftover: start it
            room = self.rooms[key] = Room(event.room)
        if kind == Kind.JOINED:
            room.members[who] = None
            if room.count is not None:
                room.count += 1
            if who == me:
                room.joined = True
                self.invites.pop(key, None)
                return Change(f"you joined {room.name}", who, me_in=True)
            return Change(f"{who} joined {room.name}", who, quiet=True)
        if kind in (Kind.LEFT, Kind.KICKED, Kind.DELETED):
            room.members.pop(who, None)
            if room.count is not None:
                room.count = max(0, room.count - 1)
            mine = who == me
            if mine:
                room.joined = False
            if kind == Kind.KICKED:
                text = f"{by} kicked {'you' if mine else who} from {room.name}"
                return Change(text, who, me_out=mine)
            if kind == Kind.DELETED:
                return Change(f"{who} left {room.name}; it is deleted", who, me_out=mine)
            if mine:
                return Change(f"you left {room.name}", who, me_out=True)
            return Change(f"{who} left {room.name}", who, quiet=True)
        if kind == Kind.TOPIC:
            room.topic = event.topic or ""
            if room.topic:
                return Change(f"{by} set the topic: {room.topic}", who)
            return Change(f"{by} cleared the topic", who)
        if kind == Kind.OWNER:
            room.owner = who
            return Change(f"{who} owns {room.name} now", who)
        return Change(f"{kind} {who} in {room.name}", who)
