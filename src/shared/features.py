"""The v1.2 features a connection asks for at login, and what each one covers (section 1).

A client lists the features it wants in `auth.features`; the server grants
those it offers, in the order asked (`granted`). A frame or field of a feature
the connection was not granted is `bad_request` (non-fatal, with the `id`),
and nothing of that feature is ever sent to it. These tables are the only
place that says which frame or field belongs to which feature: the server
checks client frames with `check_features` (`ServerConnection.receive` does
it for every frame) and filters what it sends with `SERVER_FRAME_FEATURES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import Code, RemoteProtocolError, not_granted
from .rooms import is_room

ROOMS = "rooms"  # section 2
READ = "read"  # section 3
ECHO = "echo"  # section 4: no frame of its own, the sender's own `msg` on its other sessions
TYPING = "typing"  # section 5
RESUME = "resume"  # section 6
#: Every feature name of protocol v1.2, in the contract's order.
FEATURES: tuple[str, ...] = (ROOMS, READ, ECHO, TYPING, RESUME)

#: `auth.features` as parsed: unknown names are kept (the server leaves them out of what it
#: grants, never an error), at most this many, each of at most this many code points; the
#: rest are dropped, never refused. 16 is three times the names there are, 32 the length
#: of a user name.
FEATURES_MAX = 16
FEATURE_NAME_MAX = 32

#: Client frame type -> the feature it belongs to; None: no feature needed (section 7).
#: Every v1.2 client frame is here; v1 and v1.1 frames need none.
FRAME_FEATURES: dict[str, str | None] = {
    "room_create": ROOMS,
    "join": ROOMS,
    "leave": ROOMS,
    "invite": ROOMS,
    "kick": ROOMS,
    "topic": ROOMS,
    "room_list": ROOMS,
    "read": READ,
    "typing": TYPING,
    "passwd": None,
    "delete_account": None,
    "user_search": None,
}

#: (client frame type, wire field) -> the feature that field belongs to when it is used:
#: a `to` or `with` that names a room needs `rooms`; a `token` needs `resume` (asked for in
#: the same `auth`, and offered).
FIELD_FEATURES: dict[tuple[str, str], str] = {
    ("send", "to"): ROOMS,
    ("history", "with"): ROOMS,
    ("read", "with"): ROOMS,
    ("typing", "to"): ROOMS,
    ("auth", "token"): RESUME,
}

#: Server frame type (or (type, field)) -> the feature without which a connection never
#: gets it: the server consults this before sending. `msg.to` a room, and `sent.room`, come
#: only to `rooms` connections; `auth_ok.token` only with `resume`.
SERVER_FRAME_FEATURES: dict[str | tuple[str, str], str] = {
    "room_list": ROOMS,
    "rooms": ROOMS,
    "room_event": ROOMS,
    ("msg", "to"): ROOMS,
    ("sent", "room"): ROOMS,
    "markers": READ,
    "read": READ,
    "typing": TYPING,
    ("auth_ok", "token"): RESUME,
}

#: Wire field -> the message attribute that holds it (where the two differ).
_ATTRS = {"with": "peer"}
#: Frame type -> its fields in FIELD_FEATURES, as (attribute, feature).
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    kind: tuple((_ATTRS.get(f, f), need) for (k, f), need in FIELD_FEATURES.items() if k == kind)
    for kind, _ in FIELD_FEATURES
}
#: Client frame types that use a feature in the frame or in a field: the ones to check.
CHECKED_TYPES: frozenset[str] = frozenset(
    {k for k, f in FRAME_FEATURES.items() if f is not None} | set(_FIELDS)
)


def granted(asked: Iterable[str], offered: Iterable[str]) -> tuple[str, ...]:
    """The features to grant: those asked that are offered, in the order asked, each once.

    Unknown names and names the server does not offer are left out, never an
    error (section 1); a name asked twice is granted once.
    """
    offer = frozenset(offered)
    out: list[str] = []
    for name in asked:
        if name in offer and name not in out:
            out.append(name)
    return tuple(out)


def _uses(feature: str, value: Any) -> bool:
    """Whether a field's value uses its feature: a room for `rooms`, presence otherwise."""
    return is_room(value) if feature == ROOMS else value is not None


def missing_feature(message: Any, granted_: Iterable[str]) -> str | None:
    """The first feature `message` (a parsed client frame) needs and `granted_` lacks."""
    kind = message.type
    need = FRAME_FEATURES.get(kind)
    if need is not None and need not in granted_:
        return need
    for attr, feature in _FIELDS.get(kind, ()):
        if feature not in granted_ and _uses(feature, getattr(message, attr)):
            return feature
    return None


def check_features(message: Any, granted_: Iterable[str], msg_id: Any = None) -> None:
    """Raise `bad_request` (non-fatal, carrying `msg_id`: the frame's valid id) when
    `message` uses a feature the connection was not granted."""
    feature = missing_feature(message, granted_)
    if feature is not None:
        raise RemoteProtocolError(Code.BAD_REQUEST, not_granted(feature), msg_id)


def check_frame_feature(kind: str, granted_: Iterable[str], msg_id: Any = None) -> None:
    """`check_features` for a frame known only by its type (its fields may be bad): a frame
    of a feature not granted is refused for that, whatever its fields hold."""
    need = FRAME_FEATURES.get(kind)
    if need is not None and need not in granted_:
        raise RemoteProtocolError(Code.BAD_REQUEST, not_granted(need), msg_id)
