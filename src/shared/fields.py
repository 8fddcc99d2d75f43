"""The field rules of every frame: the bounds, the name and id rules, and the one error.

Every frame module (`messages`, `requests`, `notices`) reads its fields through
these functions, so a rule is written once: an integer leaves a frame only
through `int_field` with its bounds, a text only through `bounded_text` (code
points, clarification 14), a request's own `id` only through `request_id`.
Each raises `bad_request`, carrying the frame's `id` when the caller knows it.

Every integer a frame carries comes in through `int_field` with its bounds, and
nowhere else: a number the contract's types allow but no part of the system
can hold (an `upto` SQLite cannot bind, a `before` below any id) is refused
at decode, where the error can still go back to the frame that sent it,
rather than deep in a store thread that has nobody to tell.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from .errors import Code, RemoteProtocolError

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
#: (`history.before`, `offline_ack.upto`, `read.upto`). One below 1 names no message, which
#: the contract does not call an error: acking nothing is none, and `before` is refused only
#: when it is not an int (v1.1 sections 3, 4); it gives nothing (an empty page, nothing
#: removed, a read marker that does not move).
SAFE_INT_BOUNDS = (-MAX_ID, MAX_ID)
#: `msg.ts` and `room_event.ts` (unix seconds): from the epoch to the last second of year
#: 9999, the range every clock formatting (time.localtime, datetime) can show.
TS_BOUNDS = (0.0, 253402300799.0)

MsgId = str | int
#: A `send.to` or `msg.to`: `"*"`, a room name (v1.2, a string starting with "#"), or the
#: list of user names as sent.
Recipients = Literal["*"] | str | tuple[str, ...]

#: `int_field`'s default for a field that must be present.
REQUIRED: Any = object()


def valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def valid_msg_id(value: object) -> bool:
    """A client's own id (echoed in every answer): a string of at most `ID_TEXT_MAX`
    code points, or an int within `SAFE_INT_BOUNDS` (never a bool, a float or null)."""
    if type(value) is str:
        return len(value) <= ID_TEXT_MAX
    return type(value) is int and SAFE_INT_BOUNDS[0] <= value <= SAFE_INT_BOUNDS[1]


BAD_ID = (
    f"field 'id' must be a string of at most {ID_TEXT_MAX} characters"
    f" or an integer {SAFE_INT_BOUNDS[0]}..{SAFE_INT_BOUNDS[1]}"
)


def bad(what: str, msg_id: Any = None) -> RemoteProtocolError:
    return RemoteProtocolError(Code.BAD_REQUEST, what, msg_id)


def get_field(
    obj: dict[str, Any], key: str, kind: type | tuple[type, ...], msg_id: Any = None
) -> Any:
    if key not in obj:
        raise bad(f"missing field '{key}'", msg_id)
    value = obj[key]
    # bool is an int in Python but not in the contract, and vice versa.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise bad(f"field '{key}' has the wrong type", msg_id)
    return value


def int_field(
    obj: dict[str, Any],
    key: str,
    bounds: tuple[int, int],
    msg_id: Any = None,
    default: Any = REQUIRED,
) -> Any:
    """The one way an integer field leaves a frame: present, an int, within `bounds`.

    An optional field (`default` given) may be absent; when present it is an
    int, so JSON null is refused like any other non-int: the contract says what
    the field is when it is there, and absence is how a client leaves it out.
    bool is an int to Python but not to the contract; 5.0 is a float.
    """
    if key not in obj:
        if default is REQUIRED:
            raise bad(f"missing field '{key}'", msg_id)
        return default
    value = obj[key]
    if type(value) is not int:
        raise bad(f"field '{key}' must be an integer", msg_id)
    lo, hi = bounds
    if not lo <= value <= hi:
        raise bad(f"field '{key}' must be {lo}..{hi}", msg_id)
    return value


def bool_field(obj: dict[str, Any], key: str, msg_id: Any = None, default: Any = REQUIRED) -> Any:
    """A boolean field; an optional one may be absent (null is not absent, as in `int_field`)."""
    if key not in obj and default is not REQUIRED:
        return default
    return get_field(obj, key, bool, msg_id)


def bounded_text(value: str, key: str, lo: int, hi: int, msg_id: Any = None) -> str:
    # len() counts code points, as the contract asks (clarification 14).
    if not lo <= len(value) <= hi:
        raise bad(f"field '{key}' must be {lo}..{hi} characters", msg_id)
    return value


def text_field(
    obj: dict[str, Any], key: str, lo: int, hi: int, msg_id: Any = None, default: Any = REQUIRED
) -> Any:
    """A string field of `lo..hi` code points; an optional one may be absent, not null."""
    if key not in obj and default is not REQUIRED:
        return default
    return bounded_text(get_field(obj, key, str, msg_id), key, lo, hi, msg_id)


def user_name(value: Any, key: str, msg_id: Any = None) -> str:
    if not valid_name(value):
        raise bad(f"field '{key}' is not a valid user name", msg_id)
    return value


def request_id(obj: dict[str, Any]) -> MsgId:
    """The `id` of a request that must carry one: checked first, so that every later
    error about the frame can echo it; an invalid one is refused without an echo."""
    msg_id = obj.get("id")
    if not valid_msg_id(msg_id):
        raise bad(BAD_ID)
    return msg_id  # type: ignore[return-value]


def echoed_id(obj: dict[str, Any], required: bool = True) -> MsgId | None:
    """The client's id that a server frame echoes: one the client could have sent."""
    if not required and "id" not in obj:
        return None
    msg_id = obj.get("id")
    if not valid_msg_id(msg_id):
        raise bad(BAD_ID)
    return msg_id


def names(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of strings in a server frame, as the server wrote them (absent: empty, as the
    v1 `sent` without v1.1's `queued`)."""
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise bad(f"field '{key}' must be a list of names")
    return tuple(value)


def ts_field(obj: dict[str, Any], key: str = "ts") -> float:
    """A server timestamp (unix seconds, int or float on the wire) within `TS_BOUNDS`."""
    ts = get_field(obj, key, (int, float))
    if not TS_BOUNDS[0] <= ts <= TS_BOUNDS[1]:  # NaN fails this too
        raise bad(f"field '{key}' must be {TS_BOUNDS[0]:.0f}..{TS_BOUNDS[1]:.0f}")
    return ts
