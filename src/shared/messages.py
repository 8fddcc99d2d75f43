"""Every frame of the protocol (v1, v1.1, v1.2) as a typed message, with the contract's
validation, and the two parses and the encoders.

Messages are frozen `msgspec.Struct`s: immutable like frozen dataclasses, and
ten times cheaper to make (about 0.1 us against 0.8), which counts on the
fan-out's path (a `Send`, a `Msg` and a `Sent` per message). The frames of v1
and v1.1 are here; those v1.2 adds are in `requests` (client to server) and
`notices` (server to client), and are re-exported here, so that every frame is
one import away. The field rules are in `fields` (and `rooms`).

`read_client` (the server's one call) and `parse_client_message` /
`parse_server_message` (the client's) turn one frame payload into a message
or a `RemoteProtocolError` with the right wire code; `encode` turns a message
into one frame (length header included); `encode_delivery` / `encode_sents`
are the send path's encoders, byte for byte what `encode` writes.

Every integer a frame carries comes in through `fields.int_field` with its
bounds, and nowhere else (docs/protocol.md section 3a).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import msgspec

from .errors import Code, LocalProtocolError, RemoteProtocolError
from .features import FEATURE_NAME_MAX, FEATURES, FEATURES_MAX
from .fields import (
    BROADCAST,
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    ID_TEXT_MAX,
    LIMIT_BOUNDS,
    MAX_ID,
    MSG_ID_BOUNDS,
    NAME_RE,
    PASSWORD_MAX,
    SAFE_INT_BOUNDS,
    SEQ_BOUNDS,
    TEXT_MAX,
    TS_BOUNDS,
    MsgId,
    Recipients,
    bad,
    bool_field,
    bounded_text,
    echoed_id,
    get_field,
    int_field,
    names,
    request_id,
    text_field,
    ts_field,
    user_name,
    valid_msg_id,
    valid_name,
)
from .framing import HEADER, MAX_SERVER_FRAME, encode_frame
from .notices import (
    MARKER_BOUNDS,
    Invitation,
    Marker,
    Markers,
    Ok,
    ReadNotice,
    RoomEvent,
    RoomEventKind,
    RoomInfo,
    RoomList,
    Rooms,
    RoomState,
    TypingNotice,
    Users,
)
from .notices import PARSERS as _NOTICE_PARSERS
from .notices import WIRE as _NOTICE_WIRE
from .requests import ID_TYPES as _V12_ID_TYPES
from .requests import PARSERS as _REQUEST_PARSERS
from .requests import WIRE as _REQUEST_WIRE
from .requests import (
    DeleteAccount,
    Passwd,
    Read,
    RoomCreate,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomListRequest,
    RoomTopic,
    Typing,
    UserSearch,
)
from .rooms import conversation, is_room, room_name, valid_room

#: Every public name, the v1.2 frames of `requests` and `notices` and the field rules of
#: `fields` included: callers import them all from here.
__all__ = [
    "BROADCAST",
    "CLIENT_TYPES",
    "HISTORY_LIMIT_DEFAULT",
    "HISTORY_LIMIT_MAX",
    "ID_TEXT_MAX",
    "ID_TYPES",
    "INVITE_MAX",
    "LIMIT_BOUNDS",
    "MARKER_BOUNDS",
    "MAX_ID",
    "MSG_ID_BOUNDS",
    "NAME_RE",
    "PASSWORD_MAX",
    "SAFE_INT_BOUNDS",
    "SEQ_BOUNDS",
    "TEXT_MAX",
    "TOKEN_MAX",
    "TS_BOUNDS",
    "V11_CLIENT_TYPES",
    "V12_CLIENT_TYPES",
    "Auth",
    "AuthOk",
    "ClientBye",
    "ClientMessage",
    "DeleteAccount",
    "Error",
    "HistoryPage",
    "HistoryRequest",
    "Invitation",
    "Marker",
    "Markers",
    "Msg",
    "MsgId",
    "OfflineAck",
    "Ok",
    "Passwd",
    "Ping",
    "Pong",
    "Read",
    "ReadNotice",
    "Recipients",
    "RoomCreate",
    "RoomEvent",
    "RoomEventKind",
    "RoomInfo",
    "RoomInvite",
    "RoomJoin",
    "RoomKick",
    "RoomLeave",
    "RoomList",
    "RoomListRequest",
    "RoomSent",
    "RoomState",
    "RoomTopic",
    "Rooms",
    "Roster",
    "RosterAck",
    "Send",
    "Sent",
    "ServerBye",
    "ServerMessage",
    "Typing",
    "TypingNotice",
    "UserSearch",
    "Users",
    "decode_object",
    "encode",
    "encode_delivery",
    "encode_msgs",
    "encode_names",
    "encode_object",
    "encode_payload",
    "encode_room_delivery",
    "encode_room_sents",
    "encode_sents",
    "parse_client_message",
    "parse_client_object",
    "parse_server_message",
    "raw_send_id",
    "read_client",
    "read_send",
    "to_wire",
    "valid_msg_id",
    "valid_name",
]

#: `auth.token` (v1.2 section 6): at most 512 characters; `auth.invite` (section 8): an
#: operator's code, at most 128 (`chat-server invite create` makes far shorter ones).
TOKEN_MAX = 512
INVITE_MAX = 128


# --------------------------------------------------------------------------
# Client -> server
# --------------------------------------------------------------------------
class Auth(msgspec.Struct, frozen=True):
    """`auth`: a login with `password` (or a registration), or (v1.2 `resume`) a login
    with `token`, which has no `password` and no `register`.

    `features` is None when the frame had no such field (a v1.1 client), and the
    names as asked otherwise, unknown ones included (the server leaves them out
    of what it grants). `invite` is the operator's code (`--registration invite`).
    """

    user: str
    password: str | None
    register: bool = False
    features: tuple[str, ...] | None = None
    token: str | None = None
    invite: str | None = None
    type: str = "auth"

    def __repr__(self) -> str:  # no password, token or code in a repr, so none in a log line
        extra = "" if self.features is None else f", features={self.features!r}"
        extra += "" if self.token is None else ", token=<hidden>"
        extra += "" if self.invite is None else ", invite=<hidden>"
        return f"Auth(user={self.user!r}, register={self.register!r}{extra})"


class RosterAck(msgspec.Struct, frozen=True):
    seq: int
    type: str = "roster_ack"


class Send(msgspec.Struct, frozen=True):
    """`to` is "*", a room name (v1.2: a string starting with "#"), or user names."""

    id: MsgId
    to: Recipients
    text: str
    type: str = "send"


class Ping(msgspec.Struct, frozen=True):
    type: str = "ping"


class ClientBye(msgspec.Struct, frozen=True):
    type: str = "bye"


class HistoryRequest(msgspec.Struct, frozen=True):
    """v1.1 `history`: a page of one conversation, newest first from `before` (exclusive)."""

    id: MsgId
    peer: str  # `with` on the wire (a Python keyword): "*", a user name, or (v1.2) a room
    before: int | None = None
    limit: int = HISTORY_LIMIT_DEFAULT
    type: str = "history"


class OfflineAck(msgspec.Struct, frozen=True):
    """v1.1 `offline_ack`: every stored message with `id <= upto` may be forgotten."""

    upto: int
    type: str = "offline_ack"


ClientMessage = (
    Auth
    | RosterAck
    | Send
    | Ping
    | ClientBye
    | HistoryRequest
    | OfflineAck
    | RoomCreate
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
# Server -> client
# --------------------------------------------------------------------------
class AuthOk(msgspec.Struct, frozen=True):
    """`auth_ok`. `features` (v1.2) is on the wire only when not None: the server gives the
    granted list to a connection that asked (`auth.features` present) and None to a v1.1
    one, whose `auth_ok` stays byte for byte v1.1. `token` only with `resume` granted."""

    user: str
    features: tuple[str, ...] | None = None
    token: str | None = None
    type: str = "auth_ok"

    def __repr__(self) -> str:
        extra = "" if self.features is None else f", features={self.features!r}"
        extra += "" if self.token is None else ", token=<hidden>"
        return f"AuthOk(user={self.user!r}{extra})"


class Roster(msgspec.Struct, frozen=True):
    seq: int
    full: bool
    users: tuple[str, ...] = ()
    join: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()
    type: str = "roster"


class Sent(msgspec.Struct, frozen=True):
    id: MsgId
    delivered: tuple[str, ...]
    missing: tuple[str, ...]
    #: v1.1: named, registered and offline, so stored for them (each is in `missing` too).
    queued: tuple[str, ...] = ()
    #: v1.2: the id of the stored message (its `msg.id`); every `sent` the server writes
    #: has it (`encode_sents`). None: a frame without it (a v1.1 server), taken as such.
    msg_id: int | None = None
    type: str = "sent"


class RoomSent(msgspec.Struct, frozen=True):
    """v1.2 `sent` for a `send` to a room: no name lists (members read it later)."""

    id: MsgId
    msg_id: int
    room: str
    type: str = "sent"


class Msg(msgspec.Struct, frozen=True):
    id: int
    sender: str  # `from` on the wire (a Python keyword)
    to: Recipients
    text: str
    ts: float
    #: v1.1: delivered from the offline queue (on the wire only when true).
    offline: bool = False
    type: str = "msg"


class HistoryPage(msgspec.Struct, frozen=True):
    """v1.1 server `history`: the answer to one request, oldest first."""

    id: MsgId
    messages: tuple[Msg, ...]
    more: bool
    type: str = "history"


class Pong(msgspec.Struct, frozen=True):
    type: str = "pong"


class ServerBye(msgspec.Struct, frozen=True):
    reason: str  # an `errors.Why`
    type: str = "bye"


class Error(msgspec.Struct, frozen=True):
    code: str
    message: str
    id: MsgId | None = None
    type: str = "error"


ServerMessage = (
    AuthOk
    | Roster
    | Sent
    | RoomSent
    | Msg
    | Pong
    | ServerBye
    | Error
    | HistoryPage
    | Ok
    | RoomList
    | Rooms
    | RoomEvent
    | Markers
    | ReadNotice
    | TypingNotice
    | Users
)


# --------------------------------------------------------------------------
# Client -> server parsing (what a server receives)
# --------------------------------------------------------------------------
def _features(obj: dict[str, Any]) -> tuple[str, ...] | None:
    """The names asked for. A name no server could know (longer than any feature) is
    left out, as are unknown names past the first `FEATURES_MAX`; a known name is always
    kept: asking for too much, or for the future, is never an error (v1.2 section 1). Only
    a value that is not a list of strings is."""
    if "features" not in obj:
        return None
    value = obj["features"]
    if type(value) is not list or not all(type(f) is str for f in value):
        raise bad("field 'features' must be a list of strings")
    kept: list[str] = []
    unknown = 0
    for name in value:
        if name in FEATURES:
            kept.append(name)
        elif len(name) <= FEATURE_NAME_MAX and unknown < FEATURES_MAX:
            kept.append(name)
            unknown += 1
    return tuple(kept)


def _parse_auth(obj: dict[str, Any]) -> Auth:
    user = user_name(get_field(obj, "user", str), "user")
    if "token" not in obj:
        password = text_field(obj, "password", 1, PASSWORD_MAX)
        register = bool_field(obj, "register", default=False)
        return Auth(user, password, register, _features(obj), None, _invite(obj))
    if "password" in obj:
        raise bad("an 'auth' carries a password or a token, not both")
    if bool_field(obj, "register", default=False):
        raise bad("a login with a token cannot register")
    token = text_field(obj, "token", 1, TOKEN_MAX)
    return Auth(user, None, False, _features(obj), token, _invite(obj))


def _invite(obj: dict[str, Any]) -> str | None:
    return text_field(obj, "invite", 1, INVITE_MAX, default=None)


def _parse_send(obj: dict[str, Any]) -> Send:
    msg_id = request_id(obj)
    to = obj.get("to")
    if to == BROADCAST:
        recipients: Recipients = BROADCAST
    elif isinstance(to, list) and to:
        recipients = tuple(user_name(name, "to", msg_id) for name in to)
    elif is_room(to):
        recipients = room_name(to, "to", msg_id)
    else:
        raise bad("field 'to' must be \"*\", a room or a non-empty list of user names", msg_id)
    text = bounded_text(get_field(obj, "text", str, msg_id), "text", 1, TEXT_MAX, msg_id)
    return Send(msg_id, recipients, text)


def _parse_roster_ack(obj: dict[str, Any]) -> RosterAck:
    return RosterAck(int_field(obj, "seq", SEQ_BOUNDS))


def _parse_history(obj: dict[str, Any]) -> HistoryRequest:
    msg_id = request_id(obj)
    peer = conversation(obj.get("with"), "with", msg_id)
    before = int_field(obj, "before", SAFE_INT_BOUNDS, msg_id, default=None)
    limit = int_field(obj, "limit", LIMIT_BOUNDS, msg_id, default=HISTORY_LIMIT_DEFAULT)
    return HistoryRequest(msg_id, peer, before, limit)


_CLIENT_PARSERS: dict[str, Any] = {
    "auth": _parse_auth,
    "roster_ack": _parse_roster_ack,
    "send": _parse_send,
    "ping": lambda obj: Ping(),
    "bye": lambda obj: ClientBye(),
    "history": _parse_history,
    "offline_ack": lambda obj: OfflineAck(int_field(obj, "upto", SAFE_INT_BOUNDS)),
}
#: The client frame types of v1 and v1.1: all a server that handles no v1.2 frame knows
#: (`ServerConnection(offered=None)`); each v1.2 type is an unknown type to it.
V11_CLIENT_TYPES: frozenset[str] = frozenset(_CLIENT_PARSERS)
#: The client frame types v1.2 adds (`requests.py`).
V12_CLIENT_TYPES: frozenset[str] = frozenset(_REQUEST_PARSERS)
_CLIENT_PARSERS |= _REQUEST_PARSERS

#: Client frames that carry an `id` the server echoes on every error answering them
#: (clarification 6 for `send`, v1.1 section 4 for `history`, v1.2 section 1 for every
#: v1.2 request with an `id`).
ID_TYPES: frozenset[str] = frozenset({"send", "history"}) | _V12_ID_TYPES

CLIENT_TYPES: frozenset[str] = frozenset(_CLIENT_PARSERS)


def decode_object(payload: bytes) -> dict[str, Any]:
    """Decode one payload into a JSON object that has a `type` field, or raise bad_frame."""
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(Code.BAD_FRAME, "frame is not valid UTF-8 JSON") from exc
    except RecursionError as exc:  # msgspec's answer to nesting deeper than the stack allows
        raise RemoteProtocolError(Code.BAD_FRAME, "frame is nested too deeply") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError(Code.BAD_FRAME, "frame is not a JSON object")
    if "type" not in obj:
        raise RemoteProtocolError(Code.BAD_FRAME, "frame has no 'type'")
    return obj


def raw_send_id(obj: dict[str, Any]) -> MsgId | None:
    """The `id` of a raw object when it is a valid id, so errors can echo it."""
    msg_id = obj.get("id")
    return msg_id if valid_msg_id(msg_id) else None


def parse_client_message(payload: bytes) -> ClientMessage:
    """Validate one client frame payload (what a server receives)."""
    return parse_client_object(decode_object(payload))


def read_client(payload: bytes) -> tuple[Any, MsgId | None, ClientMessage | RemoteProtocolError]:
    """One client payload, decoded and parsed in one call: its `type`, its valid `id` (for
    errors that echo it), and the message, or the field error it would raise.

    A payload that is not a JSON object with a `type` raises `bad_frame` here. A field
    error is returned, not raised, so that the connection checks the frame against its
    state first (a malformed `send` before login is `not_authenticated`, not
    `bad_request`) and raises it after: the server's hot path enters this module once.
    """
    obj = decode_object(payload)
    kind = obj["type"]
    parser = _CLIENT_PARSERS.get(kind) if isinstance(kind, str) else None
    try:
        if parser is None:
            raise bad(f"unknown type {kind!r}"[:80], raw_send_id(obj))
        return kind, raw_send_id(obj), parser(obj)
    except RemoteProtocolError as err:
        return kind, raw_send_id(obj), err


class _SendWire(msgspec.Struct, forbid_unknown_fields=True):
    """A `send` with exactly its four fields, each within the bounds `_parse_send` applies
    (an id that `valid_msg_id` takes, a text of 1..TEXT_MAX code points: msgspec counts
    code points too), decoded in one typed pass. Duplicate keys: the last one wins, as in
    the dict `decode_object` makes. No other field: an unknown one could hold nesting
    that the dict decode refuses (`bad_frame`) and a typed skip might not."""

    type: str
    id: (
        Annotated[int, msgspec.Meta(ge=SAFE_INT_BOUNDS[0], le=SAFE_INT_BOUNDS[1])]
        | Annotated[str, msgspec.Meta(max_length=ID_TEXT_MAX)]
    )
    to: str | list[str]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=TEXT_MAX)]


_send_decoder = msgspec.json.Decoder(_SendWire)
_NAME_MATCH = NAME_RE.fullmatch


def read_send(payload: bytes) -> Send | None:
    """The common frame, a well-formed `send` to `"*"` or to user names, in one typed
    decode (the server's hot path, for a connection in CHAT); or None for anything else
    (another type, a room, any field `read_client` would refuse or must judge), which
    then goes through `read_client`: every error is decided there, so a frame either
    path takes gives the same `Send`, and no frame is refused here."""
    try:
        wire = _send_decoder.decode(payload)
    except Exception:  # not this frame's shape: read_client decides what it is
        return None
    if wire.type != "send":
        return None
    to = wire.to
    if to == BROADCAST:
        return Send(wire.id, BROADCAST, wire.text)
    # The names are strings (the typed decode): `valid_name` is its pattern, matched here.
    if type(to) is list and to and all(map(_NAME_MATCH, to)):
        return Send(wire.id, tuple(to), wire.text)
    return None


def parse_client_object(obj: dict[str, Any]) -> ClientMessage:
    """Validate a decoded client object whose state was already checked."""
    kind = obj["type"]
    parser = _CLIENT_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise bad(f"unknown type {kind!r}"[:80], raw_send_id(obj))
    return parser(obj)


# --------------------------------------------------------------------------
# Server -> client parsing (what a client receives)
# --------------------------------------------------------------------------
def _parse_auth_ok(obj: dict[str, Any]) -> AuthOk:
    features = None
    if "features" in obj:
        get_field(obj, "features", list)
        features = names(obj, "features")
    token = text_field(obj, "token", 1, TOKEN_MAX, default=None)
    return AuthOk(get_field(obj, "user", str), features, token)


def _parse_roster(obj: dict[str, Any]) -> Roster:
    seq, full = int_field(obj, "seq", SEQ_BOUNDS), get_field(obj, "full", bool)
    if full:
        return Roster(seq, True, users=names(obj, "users"))
    return Roster(seq, False, join=names(obj, "join"), leave=names(obj, "leave"))


def _parse_sent(obj: dict[str, Any]) -> Sent | RoomSent:
    msg_id = echoed_id(obj)
    if "room" in obj:  # v1.2: the answer to a send to a room
        room = room_name(obj["room"], "room")
        return RoomSent(msg_id, int_field(obj, "msg_id", MSG_ID_BOUNDS), room)  # type: ignore[arg-type]
    return Sent(
        msg_id,  # type: ignore[arg-type]
        names(obj, "delivered"),
        names(obj, "missing"),
        names(obj, "queued"),
        int_field(obj, "msg_id", MSG_ID_BOUNDS, default=None),
    )


def _parse_msg(obj: dict[str, Any]) -> Msg:
    to = obj.get("to")
    if to == BROADCAST or valid_room(to):
        recipients: Recipients = to  # type: ignore[assignment]
    elif isinstance(to, list) and all(isinstance(n, str) for n in to):
        recipients = tuple(to)
    else:
        raise bad("field 'to' must be \"*\", a room or a list of names")
    return Msg(
        int_field(obj, "id", MSG_ID_BOUNDS),
        get_field(obj, "from", str),
        recipients,
        get_field(obj, "text", str),
        ts_field(obj),
        obj.get("offline", False) is True,
    )


def _parse_history_page(obj: dict[str, Any]) -> HistoryPage:
    items = get_field(obj, "messages", list)
    if not all(isinstance(item, dict) for item in items):
        raise bad("field 'messages' must be a list of message objects")
    return HistoryPage(echoed_id(obj), tuple(map(_parse_msg, items)), get_field(obj, "more", bool))  # type: ignore[arg-type]


def _parse_error(obj: dict[str, Any]) -> Error:
    msg_id = echoed_id(obj, required=False)
    return Error(get_field(obj, "code", str), str(obj.get("message", "")), msg_id)


_SERVER_PARSERS: dict[str, Any] = {
    "auth_ok": _parse_auth_ok,
    "roster": _parse_roster,
    "sent": _parse_sent,
    "msg": _parse_msg,
    "history": _parse_history_page,
    "pong": lambda obj: Pong(),
    "bye": lambda obj: ServerBye(str(obj.get("reason", ""))),
    "error": _parse_error,
} | _NOTICE_PARSERS


def parse_server_message(payload: bytes) -> ServerMessage:
    """Validate one server frame payload (what a client receives)."""
    obj = decode_object(payload)
    parser = _SERVER_PARSERS.get(obj["type"]) if isinstance(obj["type"], str) else None
    if parser is None:
        raise bad(f"unknown type {obj['type']!r}"[:80])
    return parser(obj)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()
_pack = HEADER.pack
#: The wire objects of the v1.2 frames, by message class (requests.py, notices.py).
_WIRE = _REQUEST_WIRE | _NOTICE_WIRE


def to_wire(message: ClientMessage | ServerMessage) -> dict[str, Any]:
    """The JSON object of a message, with wire field names."""
    kind = type(message)
    if kind is Msg:  # the fan-out's hot path: once per message, before the match
        m: Msg = message  # type: ignore[assignment]
        obj = {"type": "msg"} | _msg_fields(m)
        if m.offline:
            obj["offline"] = True
        return obj
    if kind is Sent:
        r: Sent = message  # type: ignore[assignment]
        obj = {
            "type": "sent",
            "id": r.id,
            "delivered": list(r.delivered),
            "missing": list(r.missing),
            "queued": list(r.queued),
        }
        if r.msg_id is not None:  # after the v1.1 fields, as `encode_sents` writes it
            obj["msg_id"] = r.msg_id
        return obj
    wire = _WIRE.get(kind)
    if wire is not None:
        return wire(message)
    match message:
        case Auth(user, password, register, features, token, invite):
            obj = {"type": "auth", "user": user}
            if password is not None:
                obj |= {"password": password, "register": register}
            if features is not None:
                obj["features"] = list(features)
            if token is not None:
                obj["token"] = token
            if invite is not None:
                obj["invite"] = invite
            return obj
        case RosterAck(seq):
            return {"type": "roster_ack", "seq": seq}
        case Send(msg_id, to, text):
            return {"type": "send", "id": msg_id, "to": _wire_to(to), "text": text}
        case AuthOk(user, features, token):
            obj = {"type": "auth_ok", "user": user}
            if features is not None:
                obj["features"] = list(features)
            if token is not None:
                obj["token"] = token
            return obj
        case RoomSent(msg_id, stored, room):
            return {"type": "sent", "id": msg_id, "msg_id": stored, "room": room}
        case Roster(seq, True, users):
            return {"type": "roster", "seq": seq, "full": True, "users": list(users)}
        case Roster(seq, False, _, join, leave):
            return {
                "type": "roster",
                "seq": seq,
                "full": False,
                "join": list(join),
                "leave": list(leave),
            }
        case HistoryRequest(msg_id, peer, before, limit):
            obj = {"type": "history", "id": msg_id, "with": peer, "limit": limit}
            if before is not None:
                obj["before"] = before
            return obj
        case OfflineAck(upto):
            return {"type": "offline_ack", "upto": upto}
        case HistoryPage(msg_id, messages, more):
            return {
                "type": "history",
                "id": msg_id,
                "messages": [_msg_fields(m) for m in messages],
                "more": more,
            }
        case ServerBye(reason):
            return {"type": "bye", "reason": str(reason)}
        case Error(code, text, msg_id):
            obj = {"type": "error", "code": code, "message": text}
            if msg_id is not None:
                obj["id"] = msg_id
            return obj
        case Ping() | Pong() | ClientBye():
            return {"type": message.type}
    raise TypeError(f"not a protocol message: {message!r}")


def _wire_to(to: Recipients) -> str | list[str]:
    """`"*"` and a room name are strings on the wire; user names a list."""
    return to if type(to) is str else list(to)


def _msg_fields(m: Msg) -> dict[str, Any]:
    """The fields every delivered message has, live, offline or in a history page."""
    return {
        "id": m.id,
        "from": m.sender,
        "to": m.to if type(m.to) is str else list(m.to),
        "text": m.text,
        "ts": float(m.ts),
    }


def encode_payload(message: ClientMessage | ServerMessage) -> bytes:
    return _encoder.encode(to_wire(message))


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """One whole frame (header and payload) for `message`."""
    return encode_frame(encode_payload(message))


def encode_names(names: Iterable[str]) -> bytes:
    """A JSON array of names, encoded once for many `sent` frames (`encode_sents`)."""
    return _encoder.encode(list(names))


def encode_sents(
    ids: Iterable[MsgId],
    delivered: bytes | Iterable[str],
    missing: Iterable[str],
    queued: Iterable[str],
    msg_ids: Iterable[int] | None = None,
) -> bytes:
    """The `sent` frames of sends with the same outcome, byte for byte what `encode(Sent)`
    writes. `delivered` is the array from `encode_names`, encoded once for all of them
    (a message to everyone lists every other user: the array is the frame's bulk), or the
    names, encoded here.

    `msg_ids` runs beside `ids`: the id of the message each send made (one send is one
    message, v1.2 section 1), written as `msg_id` after the v1.1 fields, whose bytes stay
    those of v1.1. None: no `msg_id` (a v1.1 server's `sent`)."""
    if not isinstance(delivered, bytes):
        delivered = _encoder.encode(list(delivered))
    tail = b"".join(
        (
            b',"delivered":',
            delivered,
            b',"missing":',
            encode_names(missing) if missing else b"[]",
            b',"queued":',
            encode_names(queued) if queued else b"[]",
        )
    )
    enc, frame, head = _encoder.encode, _frame, b'{"type":"sent","id":'
    if msg_ids is None:
        tail += b"}"
        return b"".join([frame(head + enc(i) + tail) for i in ids])
    tail += b',"msg_id":'
    # One join for every frame of the group: the tail (to everyone, mostly the list of
    # every other user) is copied once per frame, not once per concatenation.
    parts: list[bytes] = []
    fixed = len(head) + len(tail)
    for i, m in zip(ids, msg_ids, strict=True):
        # `%d` takes nothing but a number: a msg id that is not one stops here.
        own, last = enc(i), b"%d}" % m
        size = fixed + len(own) + len(last)
        if size > MAX_SERVER_FRAME:
            _too_large(size)
        parts += (_pack(size), head, own, tail, last)
    return b"".join(parts)


def encode_room_sents(ids: Iterable[MsgId], msg_ids: Iterable[int], room: str) -> bytes:
    """The `sent` frames of sends to one room (v1.2 section 2): {type, id, msg_id, room},
    byte for byte what `encode(RoomSent)` writes; `msg_ids` beside `ids`, as in
    `encode_sents`."""
    tail = b',"room":' + _encoder.encode(room) + b"}"
    enc, frame, head = _encoder.encode, _frame, b'{"type":"sent","id":'
    pairs = zip(ids, msg_ids, strict=True)
    return b"".join([frame(head + enc(i) + b',"msg_id":%d' % m + tail) for i, m in pairs])


def encode_delivery(
    msgs: Sequence[Msg],
    ids: Iterable[MsgId],
    delivered: bytes | Iterable[str],
    missing: Iterable[str],
    queued: Iterable[str],
) -> tuple[bytes, bytes]:
    """The `msg` frames of a group of sends (one blob for every recipient) and their
    `sent` frames, in one call: the server's send path enters this module once. `ids`
    are the sends' client ids in the order of `msgs`: the i-th send made the i-th
    message, whose id its `sent` carries as `msg_id` (v1.2 section 1)."""
    msg_ids = [m.id for m in msgs]
    return encode_msgs(msgs), encode_sents(ids, delivered, missing, queued, msg_ids)


def encode_room_delivery(
    msgs: Sequence[Msg], ids: Iterable[MsgId], room: str
) -> tuple[bytes, bytes]:
    """`encode_delivery` for sends to one room: the `msg` frames (`to` the room) and the
    room `sent` frames."""
    return encode_msgs(msgs), encode_room_sents(ids, [m.id for m in msgs], room)


def encode_msgs(msgs: Iterable[Msg]) -> bytes:
    """The `msg` frames of several messages, one blob (live: no `offline` field).

    Byte for byte `encode(msg)` of each. The messages of one group of sends share their
    sender, recipients and time (`Store.stamp`): what lies between `"id"` and `"text"`,
    and the `"ts"` after it, are encoded once and reused while the next message shares
    them; only the id and the text are encoded per message, and every part is copied
    once, into the blob."""
    enc = _encoder.encode
    parts: list[bytes] = []
    sender: str | None = None
    to: Any = None
    ts: float | None = None
    middle = tail = b""
    fixed = 0
    for m in msgs:
        if m.sender is not sender or m.to is not to or m.ts != ts:
            sender, to, ts = m.sender, m.to, m.ts
            wire_to = to if type(to) is str else list(to)
            middle = b',"from":' + enc(sender) + b',"to":' + enc(wire_to) + b',"text":'
            tail = b',"ts":' + enc(float(ts)) + b"}"
            fixed = len(middle) + len(tail)
        # `%d` takes nothing but a number (never a bool's `True`: a Msg id is an int).
        head, text = b'{"type":"msg","id":%d' % m.id, enc(m.text)
        size = fixed + len(head) + len(text)
        if size > MAX_SERVER_FRAME:
            _too_large(size)
        parts += (_pack(size), head, middle, text, tail)
    return b"".join(parts)


def _too_large(size: int) -> None:
    """A frame built in parts (`encode_msgs`, `encode_sents`: never empty, they have fixed
    parts) past what a peer accepts: what `_frame` refuses, refused the same way."""
    raise LocalProtocolError(f"frame of {size} bytes exceeds {MAX_SERVER_FRAME}")


def _frame(payload: bytes) -> bytes:
    """`framing.encode_frame` for the encoders here (a frame of a few hundred bytes can
    be neither empty nor past 16 MiB, but a bug must still not reach the wire)."""
    size = len(payload)
    if not 0 < size <= MAX_SERVER_FRAME:
        return encode_frame(payload)  # raises the right LocalProtocolError
    return _pack(size) + payload


def encode_object(obj: dict[str, Any]) -> bytes:
    """One whole frame for a prebuilt wire object (the server's hot path)."""
    return encode_frame(_encoder.encode(obj))
