"""The rules of room names and topics (protocol v1.2 section 2), and of conversations.

A room name is `#` then a user name. Two rooms never have names that differ
only in case: `room_key` is the one spelling a server files a room under
(the name shown keeps the creator's case). Room names are ASCII, so the key
is plain `lower()`, the same on every node and in every store.
"""

from __future__ import annotations

import re
from typing import Any

from .fields import BROADCAST, bad, valid_name

ROOM_PREFIX = "#"
ROOM_RE = re.compile(r"#[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
#: `topic` of a room: 0..300 code points.
TOPIC_MAX = 300


def valid_room(value: object) -> bool:
    return isinstance(value, str) and ROOM_RE.fullmatch(value) is not None


def is_room(value: object) -> bool:
    """Whether a `to` or `with` names a room (valid or not): a string starting with "#".

    A user name never starts with "#", so the first character decides which
    rule a string is checked against (and which feature it needs: `rooms`).
    """
    return type(value) is str and value.startswith(ROOM_PREFIX)


def room_key(room: str) -> str:
    """The name a room is filed under: names that differ only in case are one room."""
    return room.lower()


def room_name(value: Any, key: str, msg_id: Any = None) -> str:
    if not valid_room(value):
        raise bad(f"field '{key}' is not a valid room name", msg_id)
    return value


def conversation(value: Any, key: str, msg_id: Any = None) -> str:
    """A conversation as `history.with`, `read.with` name it: "*", a user or a room."""
    if value == BROADCAST or valid_name(value) or valid_room(value):
        return value
    raise bad(f"field '{key}' must be \"*\", a user name or a room name", msg_id)
