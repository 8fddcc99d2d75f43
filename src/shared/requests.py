"""The client frames protocol v1.2 adds: rooms, read markers, typing, one's own account.

Each is a frozen `msgspec.Struct` like the v1 frames (`messages`), with its
parser (`PARSERS`, merged into `messages.read_client`) and its wire object
(`WIRE`, used by `messages.to_wire`). A request with an `id` checks it first,
so every later error about the frame echoes it (v1.2 section 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from .fields import (
    PASSWORD_MAX,
    SAFE_INT_BOUNDS,
    MsgId,
    bad,
    bool_field,
    int_field,
    request_id,
    text_field,
    user_name,
)
from .rooms import TOPIC_MAX, conversation, is_room, room_name

#: `typing.state`, as the contract spells them.
TYPING_STATES: tuple[str, ...] = ("active", "paused", "done")
TypingState = Literal["active", "paused", "done"]
#: `user_search.prefix`: 0..32 code points (a user name is at most 32).
PREFIX_MAX = 32


class RoomCreate(msgspec.Struct, frozen=True):
    id: MsgId
    room: str
    topic: str = ""
    invite_only: bool = False
    type: str = "room_create"


class RoomJoin(msgspec.Struct, frozen=True):
    id: MsgId
    room: str
    type: str = "join"


class RoomLeave(msgspec.Struct, frozen=True):
    id: MsgId
    room: str
    type: str = "leave"


class RoomInvite(msgspec.Struct, frozen=True):
    id: MsgId
    room: str
    user: str
    type: str = "invite"


class RoomKick(msgspec.Struct, frozen=True):
    """Kicking oneself is `bad_request` (`errors.Refusal.KICK_SELF`): the server's check,
    since only it knows who the connection's user is."""

    id: MsgId
    room: str
    user: str
    type: str = "kick"


class RoomTopic(msgspec.Struct, frozen=True):
    id: MsgId
    room: str
    topic: str
    type: str = "topic"


class RoomListRequest(msgspec.Struct, frozen=True):
    id: MsgId
    type: str = "room_list"


class Read(msgspec.Struct, frozen=True):
    """`read`: the user has read the conversation `peer` (`with` on the wire) up to `upto`."""

    peer: str  # "*", a user name or a room
    upto: int
    type: str = "read"


class Typing(msgspec.Struct, frozen=True):
    """`typing`: `to` is a user name or a room (a string), or a list of user names."""

    to: str | tuple[str, ...]
    state: str  # one of TYPING_STATES
    type: str = "typing"


class Passwd(msgspec.Struct, frozen=True):
    id: MsgId
    old: str
    new: str
    logout_others: bool = False
    type: str = "passwd"

    def __repr__(self) -> str:  # no password in a repr, so none in a log line
        return f"Passwd(id={self.id!r}, logout_others={self.logout_others!r})"


class DeleteAccount(msgspec.Struct, frozen=True):
    id: MsgId
    password: str
    type: str = "delete_account"

    def __repr__(self) -> str:
        return f"DeleteAccount(id={self.id!r})"


class UserSearch(msgspec.Struct, frozen=True):
    id: MsgId
    prefix: str
    type: str = "user_search"


Request = (
    RoomCreate
    | RoomJoin
    | RoomLeave
    | RoomInvite
    | RoomKick
    | RoomTopic
    | RoomListRequest
    | Read
    | Typing
    | Passwd
    | DeleteAccount
    | UserSearch
)


# --------------------------------------------------------------------------
# Parsing (what a server receives)
# --------------------------------------------------------------------------
def _room(obj: dict[str, Any], msg_id: MsgId) -> str:
    return room_name(obj.get("room"), "room", msg_id)


def _password(obj: dict[str, Any], key: str, msg_id: MsgId) -> str:
    return text_field(obj, key, 1, PASSWORD_MAX, msg_id)


def _parse_room_create(obj: dict[str, Any]) -> RoomCreate:
    msg_id = request_id(obj)
    room = _room(obj, msg_id)
    topic = text_field(obj, "topic", 0, TOPIC_MAX, msg_id, default="")
    return RoomCreate(msg_id, room, topic, bool_field(obj, "invite_only", msg_id, default=False))


def _parse_join(obj: dict[str, Any]) -> RoomJoin:
    msg_id = request_id(obj)
    return RoomJoin(msg_id, _room(obj, msg_id))


def _parse_leave(obj: dict[str, Any]) -> RoomLeave:
    msg_id = request_id(obj)
    return RoomLeave(msg_id, _room(obj, msg_id))


def _parse_invite(obj: dict[str, Any]) -> RoomInvite:
    msg_id = request_id(obj)
    return RoomInvite(msg_id, _room(obj, msg_id), user_name(obj.get("user"), "user", msg_id))


def _parse_kick(obj: dict[str, Any]) -> RoomKick:
    msg_id = request_id(obj)
    return RoomKick(msg_id, _room(obj, msg_id), user_name(obj.get("user"), "user", msg_id))


def _parse_topic(obj: dict[str, Any]) -> RoomTopic:
    msg_id = request_id(obj)
    room = _room(obj, msg_id)
    return RoomTopic(msg_id, room, text_field(obj, "topic", 0, TOPIC_MAX, msg_id))


def _parse_read(obj: dict[str, Any]) -> Read:
    return Read(conversation(obj.get("with"), "with"), int_field(obj, "upto", SAFE_INT_BOUNDS))


def _parse_typing(obj: dict[str, Any]) -> Typing:
    to = obj.get("to")
    recipients: str | tuple[str, ...]
    if is_room(to):
        recipients = room_name(to, "to")
    elif isinstance(to, list) and to:
        recipients = tuple(user_name(name, "to") for name in to)
    elif isinstance(to, str):
        recipients = user_name(to, "to")
    else:
        raise bad("field 'to' must be a user name, a non-empty list of user names or a room")
    state = obj.get("state")
    if type(state) is not str or state not in TYPING_STATES:
        raise bad('field \'state\' must be "active", "paused" or "done"')
    return Typing(recipients, state)


def _parse_passwd(obj: dict[str, Any]) -> Passwd:
    msg_id = request_id(obj)
    old, new = _password(obj, "old", msg_id), _password(obj, "new", msg_id)
    return Passwd(msg_id, old, new, bool_field(obj, "logout_others", msg_id, default=False))


def _parse_delete_account(obj: dict[str, Any]) -> DeleteAccount:
    msg_id = request_id(obj)
    return DeleteAccount(msg_id, _password(obj, "password", msg_id))


def _parse_user_search(obj: dict[str, Any]) -> UserSearch:
    msg_id = request_id(obj)
    return UserSearch(msg_id, text_field(obj, "prefix", 0, PREFIX_MAX, msg_id))


PARSERS: dict[str, Callable[[dict[str, Any]], Request]] = {
    "room_create": _parse_room_create,
    "join": _parse_join,
    "leave": _parse_leave,
    "invite": _parse_invite,
    "kick": _parse_kick,
    "topic": _parse_topic,
    "room_list": lambda obj: RoomListRequest(request_id(obj)),
    "read": _parse_read,
    "typing": _parse_typing,
    "passwd": _parse_passwd,
    "delete_account": _parse_delete_account,
    "user_search": _parse_user_search,
}

#: The v1.2 client frames that carry an `id`, echoed on every error answering them.
ID_TYPES: frozenset[str] = frozenset(PARSERS) - {"read", "typing"}


# --------------------------------------------------------------------------
# Wire objects (what a client sends)
# --------------------------------------------------------------------------
def _wire_typing(m: Typing) -> dict[str, Any]:
    return {"type": "typing", "to": m.to if type(m.to) is str else list(m.to), "state": m.state}


WIRE: dict[type, Callable[[Any], dict[str, Any]]] = {
    RoomCreate: lambda m: {
        "type": "room_create",
        "id": m.id,
        "room": m.room,
        "topic": m.topic,
        "invite_only": m.invite_only,
    },
    RoomJoin: lambda m: {"type": "join", "id": m.id, "room": m.room},
    RoomLeave: lambda m: {"type": "leave", "id": m.id, "room": m.room},
    RoomInvite: lambda m: {"type": "invite", "id": m.id, "room": m.room, "user": m.user},
    RoomKick: lambda m: {"type": "kick", "id": m.id, "room": m.room, "user": m.user},
    RoomTopic: lambda m: {"type": "topic", "id": m.id, "room": m.room, "topic": m.topic},
    RoomListRequest: lambda m: {"type": "room_list", "id": m.id},
    Read: lambda m: {"type": "read", "with": m.peer, "upto": m.upto},
    Typing: _wire_typing,
    Passwd: lambda m: {
        "type": "passwd",
        "id": m.id,
        "old": m.old,
        "new": m.new,
        "logout_others": m.logout_others,
    },
    DeleteAccount: lambda m: {"type": "delete_account", "id": m.id, "password": m.password},
    UserSearch: lambda m: {"type": "user_search", "id": m.id, "prefix": m.prefix},
}

#: Every v1.2 client frame's class (the server hands these to its v1.2 handlers).
REQUEST_TYPES: frozenset[type] = frozenset(
    {
        RoomCreate,
        RoomJoin,
        RoomLeave,
        RoomInvite,
        RoomKick,
        RoomTopic,
        RoomListRequest,
        Read,
        Typing,
        Passwd,
        DeleteAccount,
        UserSearch,
    }
)
