"""Every frame of protocol v1 and v1.1 as a typed message, with the contract's validation.

Messages are frozen `msgspec.Struct`s: immutable like frozen dataclasses, and
ten times cheaper to make (about 0.1 us against 0.8), which counts on the
fan-out's path (a `Send`, a `Msg` and a `Sent` per message).

`parse_client_message` / `parse_server_message` turn one frame payload into a
message or raise `RemoteProtocolError` with the right wire code;
`encode` turns a message into one frame (length header included). The field
rules (name pattern, password and text bounds, which types are accepted, and
the bounds of every number) live here and nowhere else.

Every integer a frame carries comes in through `_int` with its bounds, and
nowhere else: a number the contract's types allow but no part of the system
can hold (an `upto` SQLite cannot bind, a `before` below any id) is refused
at decode, where the error can still go back to the frame that sent it,
rather than deep in a store thread that has nobody to tell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from .errors import Code, RemoteProtocolError
from .framing import HEADER, MAX_SERVER_FRAME, encode_frame

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
PASSWORD_MAX = 256
TEXT_MAX = 4096
BROADCAST = "*"
#: `history.limit`: its bounds and the page size when it is absent (v1.1 section 4).
HISTORY_LIMIT_MAX = 200
HISTORY_LIMIT_DEFAULT = 50

#: The largest integer on the wire, 2**53 - 1 (JavaScript's Number.MAX_SAFE_INTEGER): an
#: id stays exact in any JSON reader that keeps numbers as doubles, in a Redis score (a
#: double) and far inside SQLite's INTEGER (2**63 - 1). The server's ids start at 1 and
#: grow by one per message: a million a second would take 285 years to reach it.
MAX_ID = 2**53 - 1
#: A client's own id (`send.id`, `history.id`, any request's `id`) that is a string:
#: at most this many code points (an id is for matching an answer, not for content).
ID_TEXT_MAX = 128

#: Inclusive bounds of each integer field, by what it counts (docs/protocol.md section 3a).
MSG_ID_BOUNDS = (1, MAX_ID)  # `msg.id`: the server's ids start at 1
SEQ_BOUNDS = (1, MAX_ID)  # `roster.seq` and `roster_ack.seq`: the first roster is seq 1
LIMIT_BOUNDS = (1, HISTORY_LIMIT_MAX)  # `history.limit`
#: Any integer a JSON reader keeps exact: a client's own id, and the msg id a client names
#: (`history.before`, `offline_ack.upto`). One below 1 names no message, which the contract
#: does not call an error: acking nothing is none, and `before` is refused only when it is
#: not an int (v1.1 sections 3, 4); it gives nothing (an empty page, nothing removed).
SAFE_INT_BOUNDS = (-MAX_ID, MAX_ID)
#: `msg.ts` (unix seconds): from the epoch to the last second of year 9999, the range
#: every clock formatting (time.localtime, datetime) can show.
TS_BOUNDS = (0.0, 253402300799.0)

MsgId = str | int
Recipients = Literal["*"] | tuple[str, ...]


# --------------------------------------------------------------------------
# Client -> server
# --------------------------------------------------------------------------
class Auth(msgspec.Struct, frozen=True):
    user: str
    password: str
    register: bool = False
    type: str = "auth"

    def __repr__(self) -> str:  # the password never in a repr, so never in a log line
        return f"Auth(user={self.user!r}, register={self.register!r})"


class RosterAck(msgspec.Struct, frozen=True):
    seq: int
    type: str = "roster_ack"


class Send(msgspec.Struct, frozen=True):
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
    peer: str  # `with` on the wire (a Python keyword): "*" or a user name
    before: int | None = None
    limit: int = HISTORY_LIMIT_DEFAULT
    type: str = "history"


class OfflineAck(msgspec.Struct, frozen=True):
    """v1.1 `offline_ack`: every stored message with `id <= upto` may be forgotten."""

    upto: int
    type: str = "offline_ack"


ClientMessage = Auth | RosterAck | Send | Ping | ClientBye | HistoryRequest | OfflineAck


# --------------------------------------------------------------------------
# Server -> client
# --------------------------------------------------------------------------
class AuthOk(msgspec.Struct, frozen=True):
    user: str
    type: str = "auth_ok"


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
    reason: str
    type: str = "bye"


class Error(msgspec.Struct, frozen=True):
    code: str
    message: str
    id: MsgId | None = None
    type: str = "error"


ServerMessage = AuthOk | Roster | Sent | Msg | Pong | ServerBye | Error | HistoryPage


# --------------------------------------------------------------------------
# Field checks (each raises bad_request, carrying the send id when known)
# --------------------------------------------------------------------------
def valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def _bad(what: str, msg_id: Any = None) -> RemoteProtocolError:
    return RemoteProtocolError(Code.BAD_REQUEST, what, msg_id)


#: `_int`'s default for a field that must be present.
_REQUIRED: Any = object()


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], msg_id: Any = None) -> Any:
    if key not in obj:
        raise _bad(f"missing field '{key}'", msg_id)
    value = obj[key]
    # bool is an int in Python but not in the contract, and vice versa.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _bad(f"field '{key}' has the wrong type", msg_id)
    return value


def _int(
    obj: dict[str, Any],
    key: str,
    bounds: tuple[int, int],
    msg_id: Any = None,
    default: Any = _REQUIRED,
) -> Any:
    """The one way an integer field leaves a frame: present, an int, within `bounds`.

    An optional field (`default` given) may be absent; when present it is an
    int, so JSON null is refused like any other non-int: the contract says what
    the field is when it is there, and absence is how a client leaves it out.
    bool is an int to Python but not to the contract; 5.0 is a float.
    """
    if key not in obj:
        if default is _REQUIRED:
            raise _bad(f"missing field '{key}'", msg_id)
        return default
    value = obj[key]
    if type(value) is not int:
        raise _bad(f"field '{key}' must be an integer", msg_id)
    lo, hi = bounds
    if not lo <= value <= hi:
        raise _bad(f"field '{key}' must be {lo}..{hi}", msg_id)
    return value


def _bounded_text(value: str, key: str, lo: int, hi: int, msg_id: Any = None) -> str:
    # len() counts code points, as the contract asks (clarification 14).
    if not lo <= len(value) <= hi:
        raise _bad(f"field '{key}' must be {lo}..{hi} characters", msg_id)
    return value


def _user_name(value: Any, key: str, msg_id: Any = None) -> str:
    if not valid_name(value):
        raise _bad(f"field '{key}' is not a valid user name", msg_id)
    return value


def valid_msg_id(value: object) -> bool:
    """A client's own id (echoed in every answer): a string of at most `ID_TEXT_MAX`
    code points, or an int within `SAFE_INT_BOUNDS` (never a bool, a float or null)."""
    if type(value) is str:
        return len(value) <= ID_TEXT_MAX
    return type(value) is int and SAFE_INT_BOUNDS[0] <= value <= SAFE_INT_BOUNDS[1]


_BAD_ID = (
    f"field 'id' must be a string of at most {ID_TEXT_MAX} characters"
    f" or an integer {SAFE_INT_BOUNDS[0]}..{SAFE_INT_BOUNDS[1]}"
)


def _parse_auth(obj: dict[str, Any]) -> Auth:
    user = _user_name(_get(obj, "user", str), "user")
    password = _bounded_text(_get(obj, "password", str), "password", 1, PASSWORD_MAX)
    register = obj.get("register", False)
    if not isinstance(register, bool):
        raise _bad("field 'register' has the wrong type")
    return Auth(user, password, register)


def _parse_send(obj: dict[str, Any]) -> Send:
    msg_id = obj.get("id")
    if not valid_msg_id(msg_id):
        raise _bad(_BAD_ID)
    to = obj.get("to")
    if to == BROADCAST:
        recipients: Recipients = BROADCAST
    elif isinstance(to, list) and to:
        recipients = tuple(_user_name(name, "to", msg_id) for name in to)
    else:
        raise _bad("field 'to' must be \"*\" or a non-empty list of user names", msg_id)
    text = _bounded_text(_get(obj, "text", str, msg_id), "text", 1, TEXT_MAX, msg_id)
    return Send(msg_id, recipients, text)


def _parse_roster_ack(obj: dict[str, Any]) -> RosterAck:
    return RosterAck(_int(obj, "seq", SEQ_BOUNDS))


def _parse_history(obj: dict[str, Any]) -> HistoryRequest:
    msg_id = obj.get("id")
    if not valid_msg_id(msg_id):
        raise _bad(_BAD_ID)
    peer = obj.get("with")
    if peer != BROADCAST and not valid_name(peer):
        raise _bad("field 'with' must be \"*\" or a user name", msg_id)
    before = _int(obj, "before", SAFE_INT_BOUNDS, msg_id, default=None)
    limit = _int(obj, "limit", LIMIT_BOUNDS, msg_id, default=HISTORY_LIMIT_DEFAULT)
    return HistoryRequest(msg_id, peer, before, limit)


_CLIENT_PARSERS = {
    "auth": _parse_auth,
    "roster_ack": _parse_roster_ack,
    "send": _parse_send,
    "ping": lambda obj: Ping(),
    "bye": lambda obj: ClientBye(),
    "history": _parse_history,
    "offline_ack": lambda obj: OfflineAck(_int(obj, "upto", SAFE_INT_BOUNDS)),
}

#: Client frames that carry an `id` the server echoes on every error answering them
#: (clarification 6 for `send`, v1.1 section 4 for `history`).
ID_TYPES: frozenset[str] = frozenset({"send", "history"})

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
            raise _bad(f"unknown type {kind!r}"[:80], raw_send_id(obj))
        return kind, raw_send_id(obj), parser(obj)
    except RemoteProtocolError as err:
        return kind, raw_send_id(obj), err


def parse_client_object(obj: dict[str, Any]) -> ClientMessage:
    """Validate a decoded client object whose state was already checked."""
    kind = obj["type"]
    parser = _CLIENT_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise _bad(f"unknown type {kind!r}"[:80], raw_send_id(obj))
    return parser(obj)


# --------------------------------------------------------------------------
# Server -> client parsing (what a client receives)
# --------------------------------------------------------------------------
def _names(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise _bad(f"field '{key}' must be a list of names")
    return tuple(value)


def _parse_roster(obj: dict[str, Any]) -> Roster:
    seq, full = _int(obj, "seq", SEQ_BOUNDS), _get(obj, "full", bool)
    if full:
        return Roster(seq, True, users=_names(obj, "users"))
    return Roster(seq, False, join=_names(obj, "join"), leave=_names(obj, "leave"))


def _parse_msg(obj: dict[str, Any]) -> Msg:
    to = obj.get("to")
    if to != BROADCAST and not (isinstance(to, list) and all(isinstance(n, str) for n in to)):
        raise _bad("field 'to' must be \"*\" or a list of names")
    recipients: Recipients = BROADCAST if to == BROADCAST else tuple(to)
    ts = _get(obj, "ts", (int, float))
    if not TS_BOUNDS[0] <= ts <= TS_BOUNDS[1]:  # NaN fails this too
        raise _bad(f"field 'ts' must be {TS_BOUNDS[0]:.0f}..{TS_BOUNDS[1]:.0f}")
    offline = obj.get("offline", False) is True
    return Msg(
        _int(obj, "id", MSG_ID_BOUNDS),
        _get(obj, "from", str),
        recipients,
        _get(obj, "text", str),
        ts,
        offline,
    )


def _parse_history_page(obj: dict[str, Any]) -> HistoryPage:
    items = _get(obj, "messages", list)
    if not all(isinstance(item, dict) for item in items):
        raise _bad("field 'messages' must be a list of message objects")
    return HistoryPage(_echoed_id(obj), tuple(map(_parse_msg, items)), _get(obj, "more", bool))


def _echoed_id(obj: dict[str, Any], required: bool = True) -> MsgId | None:
    """The client's id that a server frame echoes: one the client could have sent."""
    if not required and "id" not in obj:
        return None
    msg_id = obj.get("id")
    if not valid_msg_id(msg_id):
        raise _bad(_BAD_ID)
    return msg_id


def _parse_error(obj: dict[str, Any]) -> Error:
    msg_id = _echoed_id(obj, required=False)
    return Error(_get(obj, "code", str), str(obj.get("message", "")), msg_id)


_SERVER_PARSERS = {
    "auth_ok": lambda obj: AuthOk(_get(obj, "user", str)),
    "roster": _parse_roster,
    "sent": lambda obj: Sent(
        _echoed_id(obj), _names(obj, "delivered"), _names(obj, "missing"), _names(obj, "queued")
    ),
    "msg": _parse_msg,
    "history": _parse_history_page,
    "pong": lambda obj: Pong(),
    "bye": lambda obj: ServerBye(str(obj.get("reason", ""))),
    "error": _parse_error,
}


def parse_server_message(payload: bytes) -> ServerMessage:
    """Validate one server frame payload (what a client receives)."""
    obj = decode_object(payload)
    parser = _SERVER_PARSERS.get(obj["type"]) if isinstance(obj["type"], str) else None
    if parser is None:
        raise _bad(f"unknown type {obj['type']!r}"[:80])
    return parser(obj)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()
_pack = HEADER.pack


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
        return {
            "type": "sent",
            "id": r.id,
            "delivered": list(r.delivered),
            "missing": list(r.missing),
            "queued": list(r.queued),
        }
    match message:
        case Auth(user, password, register):
            return {"type": "auth", "user": user, "password": password, "register": register}
        case RosterAck(seq):
            return {"type": "roster_ack", "seq": seq}
        case Send(msg_id, to, text):
            return {"type": "send", "id": msg_id, "to": _wire_to(to), "text": text}
        case AuthOk(user):
            return {"type": "auth_ok", "user": user}
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
            return {"type": "bye", "reason": reason}
        case Error(code, text, msg_id):
            obj = {"type": "error", "code": code, "message": text}
            if msg_id is not None:
                obj["id"] = msg_id
            return obj
        case Ping() | Pong() | ClientBye():
            return {"type": message.type}
    raise TypeError(f"not a protocol message: {message!r}")


def _wire_to(to: Recipients) -> str | list[str]:
    return to if to == BROADCAST else list(to)


def _msg_fields(m: Msg) -> dict[str, Any]:
    """The fields every delivered message has, live, offline or in a history page."""
    return {
        "id": m.id,
        "from": m.sender,
        "to": m.to if m.to == BROADCAST else list(m.to),
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
) -> bytes:
    """The `sent` frames of sends with the same outcome, byte for byte what `encode(Sent)`
    writes; `delivered` is the array from `encode_names`, encoded once for all of them
    (a message to everyone lists every other user: the array is the frame's bulk), or the
    names, encoded here."""
    if not isinstance(delivered, bytes):
        delivered = _encoder.encode(list(delivered))
    tail = b',"delivered":' + delivered
    tail += b',"missing":' + encode_names(missing) + b',"queued":' + encode_names(queued) + b"}"
    enc, frame = _encoder.encode, _frame
    return b"".join([frame(b'{"type":"sent","id":' + enc(i) + tail) for i in ids])


def encode_delivery(
    msgs: Iterable[Msg],
    ids: Iterable[MsgId],
    delivered: bytes | Iterable[str],
    missing: Iterable[str],
    queued: Iterable[str],
) -> tuple[bytes, bytes]:
    """The `msg` frames of a group of sends (one blob for every recipient) and their
    `sent` frames, in one call: the server's send path enters this module once."""
    return encode_msgs(msgs), encode_sents(ids, delivered, missing, queued)


def encode_msgs(msgs: Iterable[Msg]) -> bytes:
    """The `msg` frames of several messages, one blob (live: no `offline` field)."""
    enc, frame = _encoder.encode, _frame
    return b"".join(
        [
            frame(
                enc(
                    {
                        "type": "msg",
                        "id": m.id,
                        "from": m.sender,
                        "to": m.to if m.to == BROADCAST else list(m.to),
                        "text": m.text,
                        "ts": float(m.ts),
                    }
                )
            )
            for m in msgs
        ]
    )


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
