"""The server frames protocol v1.2 adds: answers (`ok`, `room_list`, `users`) and notices
(`rooms`, `room_event`, `markers`, `read`, `typing`).

Frozen `msgspec.Struct`s like the v1 frames, each with its wire object (`WIRE`,
used by `messages.to_wire`) and its parser (`PARSERS`, merged into
`messages.parse_server_message`, the client's one parse). What a client accepts
is checked as the v1 frames are: every integer through `int_field` with its
bounds, every echoed `id` through `echoed_id`; names are taken as the server
wrote them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec

from .errors import LocalProtocolError
from .fields import (
    MAX_ID,
    MsgId,
    bad,
    echoed_id,
    get_field,
    int_field,
    names,
    ts_field,
)

#: `markers[].upto`, `read.upto` (server to client), `rooms[].last`, `markers[].last`:
#: a msg id, or 0 for none.
MARKER_BOUNDS = (0, MAX_ID)
#: `markers[].unread` counts up to 1000: 1000 means "1000 or more" (v1.2 section 3).
UNREAD_MAX = 1000
UNREAD_BOUNDS = (0, UNREAD_MAX)
#: At most this many `markers` entries (v1.2 section 3) and `users` names (section 7).
MARKERS_MAX = 1000
USERS_MAX = 50
#: `room_list[].members`: a count.
COUNT_BOUNDS = (0, MAX_ID)


class RoomEventKind(StrEnum):
    """`room_event.event`."""

    CREATED = "created"
    JOINED = "joined"
    LEFT = "left"
    KICKED = "kicked"
    INVITED = "invited"
    TOPIC = "topic"
    OWNER = "owner"  # the new owner is `user`
    DELETED = "deleted"  # `user` is who left last


#: The events that carry `by` (who did it), and those that carry `topic`.
EVENTS_WITH_BY: frozenset[str] = frozenset(
    {RoomEventKind.INVITED, RoomEventKind.KICKED, RoomEventKind.TOPIC}
)
EVENTS_WITH_TOPIC: frozenset[str] = frozenset({RoomEventKind.CREATED, RoomEventKind.TOPIC})


class Ok(msgspec.Struct, frozen=True):
    """The answer to a request that needs no other (v1.2 section 1)."""

    id: MsgId
    type: str = "ok"


class RoomInfo(msgspec.Struct, frozen=True):
    """One entry of a `room_list` answer (`members` is a count here)."""

    room: str
    topic: str
    invite_only: bool
    owner: str
    members: int
    member: bool
    invited: bool


class RoomList(msgspec.Struct, frozen=True):
    """The answer to `room_list`: public rooms and the user's, sorted by name."""

    id: MsgId
    rooms: tuple[RoomInfo, ...]
    type: str = "room_list"


class RoomState(msgspec.Struct, frozen=True):
    """One room of the `rooms` frame: `members` are names (sorted), `last` the id of the
    room's newest message (0 if none)."""

    room: str
    topic: str
    invite_only: bool
    owner: str
    members: tuple[str, ...]
    last: int


class Invitation(msgspec.Struct, frozen=True):
    """An invite the user holds: to `room`, from `by`."""

    room: str
    by: str


class Rooms(msgspec.Struct, frozen=True):
    """The full state of the user's rooms, once, right after the first `roster_ack`."""

    rooms: tuple[RoomState, ...]
    invites: tuple[Invitation, ...]
    type: str = "rooms"


class RoomEvent(msgspec.Struct, frozen=True):
    """Something happened in a room. `by` for invited, kicked and topic; `topic` for
    created and topic (`EVENTS_WITH_BY`, `EVENTS_WITH_TOPIC`); None elsewhere."""

    room: str
    event: str  # a RoomEventKind
    user: str
    ts: float
    by: str | None = None
    topic: str | None = None
    type: str = "room_event"


class Marker(msgspec.Struct, frozen=True):
    """One conversation's read state: `peer` is `with` on the wire ("*", a user, a room)."""

    peer: str
    upto: int
    last: int
    unread: int


class Markers(msgspec.Struct, frozen=True):
    """Every conversation's read state, once, after the first `roster_ack`, newest first."""

    markers: tuple[Marker, ...]
    type: str = "markers"


class ReadNotice(msgspec.Struct, frozen=True):
    """`read` from the server: another session of the user moved a marker to `upto`."""

    peer: str  # `with` on the wire
    upto: int
    type: str = "read"


class TypingNotice(msgspec.Struct, frozen=True):
    """`typing` from the server: `sender` (`from` on the wire) is typing to `to`."""

    sender: str
    to: str | tuple[str, ...]
    state: str
    type: str = "typing"


class Users(msgspec.Struct, frozen=True):
    """The answer to `user_search`: at most `USERS_MAX` names, sorted; `more` if cut."""

    id: MsgId
    users: tuple[str, ...]
    more: bool
    type: str = "users"


Notice = Ok | RoomList | Rooms | RoomEvent | Markers | ReadNotice | TypingNotice | Users


# --------------------------------------------------------------------------
# Wire objects (what the server sends)
# --------------------------------------------------------------------------
def _wire_room_event(m: RoomEvent) -> dict[str, Any]:
    """A bug that would put `by` or `topic` on the wrong event never reaches the wire."""
    if (m.by is not None) != (m.event in EVENTS_WITH_BY):
        raise LocalProtocolError(f"room_event {m.event!r} with by={m.by!r}")
    if (m.topic is not None) != (m.event in EVENTS_WITH_TOPIC):
        raise LocalProtocolError(f"room_event {m.event!r} with topic={m.topic!r}")
    obj: dict[str, Any] = {
        "type": "room_event",
        "room": m.room,
        "event": str(m.event),
        "user": m.user,
        "ts": float(m.ts),
    }
    if m.by is not None:
        obj["by"] = m.by
    if m.topic is not None:
        obj["topic"] = m.topic
    return obj


def _wire_room_info(r: RoomInfo) -> dict[str, Any]:
    return {
        "room": r.room,
        "topic": r.topic,
        "invite_only": r.invite_only,
        "owner": r.owner,
        "members": r.members,
        "member": r.member,
        "invited": r.invited,
    }


def _wire_room_state(r: RoomState) -> dict[str, Any]:
    return {
        "room": r.room,
        "topic": r.topic,
        "invite_only": r.invite_only,
        "owner": r.owner,
        "members": list(r.members),
        "last": r.last,
    }


WIRE: dict[type, Callable[[Any], dict[str, Any]]] = {
    Ok: lambda m: {"type": "ok", "id": m.id},
    RoomList: lambda m: {
        "type": "room_list",
        "id": m.id,
        "rooms": [_wire_room_info(r) for r in m.rooms],
    },
    Rooms: lambda m: {
        "type": "rooms",
        "rooms": [_wire_room_state(r) for r in m.rooms],
        "invites": [{"room": i.room, "by": i.by} for i in m.invites],
    },
    RoomEvent: _wire_room_event,
    Markers: lambda m: {
        "type": "markers",
        "markers": [
            {"with": k.peer, "upto": k.upto, "last": k.last, "unread": k.unread} for k in m.markers
        ],
    },
    ReadNotice: lambda m: {"type": "read", "with": m.peer, "upto": m.upto},
    TypingNotice: lambda m: {
        "type": "typing",
        "from": m.sender,
        "to": m.to if type(m.to) is str else list(m.to),
        "state": m.state,
    },
    Users: lambda m: {"type": "users", "id": m.id, "users": list(m.users), "more": m.more},
}


# --------------------------------------------------------------------------
# Parsing (what a client receives)
# --------------------------------------------------------------------------
def _items(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = get_field(obj, key, list)
    if not all(isinstance(item, dict) for item in items):
        raise bad(f"field '{key}' must be a list of objects")
    return items


def _str(obj: dict[str, Any], key: str) -> str:
    return get_field(obj, key, str)


def _parse_room_info(r: dict[str, Any]) -> RoomInfo:
    return RoomInfo(
        _str(r, "room"),
        _str(r, "topic"),
        get_field(r, "invite_only", bool),
        _str(r, "owner"),
        int_field(r, "members", COUNT_BOUNDS),
        get_field(r, "member", bool),
        get_field(r, "invited", bool),
    )


def _parse_room_state(r: dict[str, Any]) -> RoomState:
    get_field(r, "members", list)
    return RoomState(
        _str(r, "room"),
        _str(r, "topic"),
        get_field(r, "invite_only", bool),
        _str(r, "owner"),
        names(r, "members"),
        int_field(r, "last", MARKER_BOUNDS),
    )


def _parse_rooms(obj: dict[str, Any]) -> Rooms:
    return Rooms(
        tuple(map(_parse_room_state, _items(obj, "rooms"))),
        tuple(Invitation(_str(i, "room"), _str(i, "by")) for i in _items(obj, "invites")),
    )


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    return None if key not in obj else _str(obj, key)


def _parse_room_event(obj: dict[str, Any]) -> RoomEvent:
    return RoomEvent(
        _str(obj, "room"),
        _str(obj, "event"),
        _str(obj, "user"),
        ts_field(obj),
        _optional_str(obj, "by"),
        _optional_str(obj, "topic"),
    )


def _parse_marker(k: dict[str, Any]) -> Marker:
    return Marker(
        _str(k, "with"),
        int_field(k, "upto", MARKER_BOUNDS),
        int_field(k, "last", MARKER_BOUNDS),
        int_field(k, "unread", UNREAD_BOUNDS),
    )


def _parse_typing(obj: dict[str, Any]) -> TypingNotice:
    to = obj.get("to")
    if type(to) is list:
        recipients: str | tuple[str, ...] = names(obj, "to")
    elif type(to) is str:
        recipients = to
    else:
        raise bad("field 'to' must be a name, a room or a list of names")
    return TypingNotice(_str(obj, "from"), recipients, _str(obj, "state"))


def _parse_users(obj: dict[str, Any]) -> Users:
    msg_id = echoed_id(obj)
    get_field(obj, "users", list)
    return Users(msg_id, names(obj, "users"), get_field(obj, "more", bool))  # type: ignore[arg-type]


PARSERS: dict[str, Callable[[dict[str, Any]], Notice]] = {
    "ok": lambda obj: Ok(echoed_id(obj)),  # type: ignore[arg-type]
    "room_list": lambda obj: RoomList(
        echoed_id(obj),  # type: ignore[arg-type]
        tuple(map(_parse_room_info, _items(obj, "rooms"))),
    ),
    "rooms": _parse_rooms,
    "room_event": _parse_room_event,
    "markers": lambda obj: Markers(tuple(map(_parse_marker, _items(obj, "markers")))),
    "read": lambda obj: ReadNotice(_str(obj, "with"), int_field(obj, "upto", MARKER_BOUNDS)),
    "typing": _parse_typing,
    "users": _parse_users,
}
