"""The bounds of every number on the wire, checked where a frame is decoded.

One table names every integer field of every frame with its bounds; each
property runs over all of it, so a field added to the table is checked by
every rule below. docs/protocol.md section 4 states the same bounds in words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.messages import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    ID_TEXT_MAX,
    LIMIT_BOUNDS,
    MARKER_BOUNDS,
    MAX_ID,
    MSG_ID_BOUNDS,
    SAFE_INT_BOUNDS,
    SEQ_BOUNDS,
    TS_BOUNDS,
    parse_client_message,
    parse_server_message,
    raw_send_id,
    valid_msg_id,
)
from chat.shared.notices import COUNT_BOUNDS, UNREAD_BOUNDS
from chat.shared.states import State, check_client_frame

from .strategies import relaxed


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


class IntField(NamedTuple):
    """One integer field: a valid frame to put it in, its bounds, and how to read it back."""

    frame: dict[str, Any]
    key: str
    bounds: tuple[int, int]
    read: Callable[[Any], int]
    echoes: Any = None  # the id every error about this frame carries
    optional: bool = False
    #: A field inside a list of objects: the whole frame around the object (server frames).
    wrap: Callable[[dict[str, Any]], dict[str, Any]] | None = None


HISTORY = {"type": "history", "id": "h1", "with": "*"}
CLIENT_FIELDS = {
    "roster_ack.seq": IntField({"type": "roster_ack"}, "seq", SEQ_BOUNDS, lambda m: m.seq),
    "offline_ack.upto": IntField(
        {"type": "offline_ack"}, "upto", SAFE_INT_BOUNDS, lambda m: m.upto
    ),
    "history.before": IntField(HISTORY, "before", SAFE_INT_BOUNDS, lambda m: m.before, "h1", True),
    "history.limit": IntField(HISTORY, "limit", LIMIT_BOUNDS, lambda m: m.limit, "h1", True),
    # protocol v1.2
    "read.upto": IntField({"type": "read", "with": "*"}, "upto", SAFE_INT_BOUNDS, lambda m: m.upto),
}
MSG = {"type": "msg", "id": 1, "from": "bob", "to": "*", "text": "x", "ts": 1.5}
MARKER = {"with": "bob", "upto": 0, "last": 1, "unread": 0}
ROOM_STATE = {"room": "#d", "topic": "", "invite_only": False, "owner": "a", "members": ["a"]}
ROOM_INFO = {
    "room": "#d",
    "topic": "",
    "invite_only": False,
    "owner": "a",
    "member": True,
    "invited": False,
}


def in_markers(o: dict[str, Any]) -> dict[str, Any]:
    return {"type": "markers", "markers": [o]}


SERVER_FIELDS = {
    "msg.id": IntField(MSG, "id", MSG_ID_BOUNDS, lambda m: m.id),
    "roster.seq": IntField(
        {"type": "roster", "full": True, "users": []}, "seq", SEQ_BOUNDS, lambda m: m.seq
    ),
    "history.messages[].id": IntField(
        MSG,
        "id",
        MSG_ID_BOUNDS,
        lambda m: m.messages[0].id,
        wrap=lambda o: {"type": "history", "id": "h1", "messages": [o], "more": False},
    ),
    # protocol v1.2
    "sent.msg_id": IntField(
        {"type": "sent", "id": 1, "delivered": [], "missing": [], "queued": []},
        "msg_id",
        MSG_ID_BOUNDS,
        lambda m: m.msg_id,
    ),
    "sent(room).msg_id": IntField(
        {"type": "sent", "id": 1, "room": "#dev"}, "msg_id", MSG_ID_BOUNDS, lambda m: m.msg_id
    ),
    "read.upto": IntField({"type": "read", "with": "*"}, "upto", MARKER_BOUNDS, lambda m: m.upto),
    "markers[].upto": IntField(
        MARKER, "upto", MARKER_BOUNDS, lambda m: m.markers[0].upto, wrap=in_markers
    ),
    "markers[].last": IntField(
        MARKER, "last", MARKER_BOUNDS, lambda m: m.markers[0].last, wrap=in_markers
    ),
    "markers[].unread": IntField(
        MARKER, "unread", UNREAD_BOUNDS, lambda m: m.markers[0].unread, wrap=in_markers
    ),
    "rooms[].last": IntField(
        ROOM_STATE,
        "last",
        MARKER_BOUNDS,
        lambda m: m.rooms[0].last,
        wrap=lambda o: {"type": "rooms", "rooms": [o], "invites": []},
    ),
    "room_list[].members": IntField(
        ROOM_INFO,
        "members",
        COUNT_BOUNDS,
        lambda m: m.rooms[0].members,
        wrap=lambda o: {"type": "room_list", "id": 1, "rooms": [o]},
    ),
}

client_fields = st.sampled_from(sorted(CLIENT_FIELDS))
server_fields = st.sampled_from(sorted(SERVER_FIELDS))
not_ints = st.one_of(
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def inside(draw: st.DrawFn, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return draw(st.sampled_from([lo, hi]) | st.integers(min_value=lo, max_value=hi))


@st.composite
def outside(draw: st.DrawFn, bounds: tuple[int, int]) -> int:
    """Just past either end, or far past it: SQLite's and 64-bit limits and beyond."""
    lo, hi = bounds
    near = st.sampled_from([lo - 1, hi + 1, -(2**63) - 1, 2**63, 2**64, -(10**30), 10**30])
    far = st.integers(max_value=lo - 1) | st.integers(min_value=hi + 1)
    value = draw(near | far)
    return value if not lo <= value <= hi else hi + 1


def server_frame(name: str, value: Any) -> bytes:
    field = SERVER_FIELDS[name]
    obj = field.frame | {field.key: value}
    return raw(obj if field.wrap is None else field.wrap(obj))


def refused(payload: bytes, parse: Callable[[bytes], Any]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse(payload)
    assert info.value.code is Code.BAD_REQUEST and not info.value.fatal
    return info.value


# --- the bounds themselves --------------------------------------------------------------
def test_every_id_is_exact_as_a_double_and_fits_sqlite_and_the_ids_start_at_one() -> None:
    assert MAX_ID == 2**53 - 1 and float(MAX_ID) == MAX_ID
    assert float(MAX_ID + 2) != MAX_ID + 2  # past 2**53 a double skips integers
    assert MAX_ID < 2**63 - 1
    assert MSG_ID_BOUNDS == (1, MAX_ID) and SEQ_BOUNDS == (1, MAX_ID)
    assert SAFE_INT_BOUNDS == (-MAX_ID, MAX_ID)
    assert LIMIT_BOUNDS == (1, HISTORY_LIMIT_MAX) == (1, 200)


# --- client frames ----------------------------------------------------------------------
@relaxed
@given(st.data(), client_fields)
def test_a_client_integer_inside_its_bounds_is_taken_as_sent(
    data: st.DataObject, name: str
) -> None:
    field = CLIENT_FIELDS[name]
    value = data.draw(inside(field.bounds))
    message = parse_client_message(raw(field.frame | {field.key: value}))
    assert field.read(message) == value


@relaxed
@given(st.data(), client_fields)
def test_a_client_integer_outside_its_bounds_is_bad_request_with_the_frames_id(
    data: st.DataObject, name: str
) -> None:
    field = CLIENT_FIELDS[name]
    value = data.draw(outside(field.bounds))
    err = refused(raw(field.frame | {field.key: value}), parse_client_message)
    assert err.msg_id == field.echoes
    assert str(field.bounds[1]) in err.message  # it says what is allowed


@relaxed
@given(client_fields, not_ints)
def test_a_client_integer_field_holding_no_int_is_bad_request_null_included(
    name: str, value: Any
) -> None:
    field = CLIENT_FIELDS[name]
    err = refused(raw(field.frame | {field.key: value}), parse_client_message)
    assert err.msg_id == field.echoes


@pytest.mark.parametrize("name", sorted(CLIENT_FIELDS))
def test_an_absent_integer_field_is_its_default_or_bad_request(name: str) -> None:
    field = CLIENT_FIELDS[name]
    if not field.optional:
        assert refused(raw(field.frame), parse_client_message).msg_id == field.echoes
        return
    message = parse_client_message(raw(field.frame))
    assert field.read(message) == {"before": None, "limit": HISTORY_LIMIT_DEFAULT}[field.key]


# --- a client's own ids ------------------------------------------------------------------
client_ids = st.one_of(
    st.text(max_size=ID_TEXT_MAX), st.integers(min_value=-MAX_ID, max_value=MAX_ID)
)
bad_client_ids = st.one_of(
    st.text(min_size=ID_TEXT_MAX + 1, max_size=ID_TEXT_MAX + 40),
    st.integers(min_value=MAX_ID + 1),
    st.integers(max_value=-MAX_ID - 1),
    not_ints.filter(lambda v: not isinstance(v, str)),
)


@relaxed
@given(client_ids, st.sampled_from(["send", "history"]))
def test_a_client_id_inside_its_bounds_is_echoed_unchanged(msg_id: Any, kind: str) -> None:
    assert valid_msg_id(msg_id)
    fields = {"to": "*", "text": "x"} if kind == "send" else {"with": "*"}
    assert parse_client_message(raw({"type": kind, "id": msg_id} | fields)).id == msg_id
    err = refused(raw({"type": kind, "id": msg_id, "with": 5, "to": 5}), parse_client_message)
    assert err.msg_id == msg_id and type(err.msg_id) is type(msg_id)


@relaxed
@given(bad_client_ids, st.sampled_from(["send", "history", "room_create", "passwd"]))
def test_a_client_id_outside_its_bounds_is_never_echoed(msg_id: Any, kind: str) -> None:
    """Not by the frame's own errors, not by an unknown type, not by a state error."""
    obj = {"type": kind, "id": msg_id, "to": "*", "text": "x", "with": "*"}
    assert not valid_msg_id(msg_id) and raw_send_id(obj) is None
    assert refused(raw(obj), parse_client_message).msg_id is None
    with pytest.raises(RemoteProtocolError) as info:
        check_client_frame(State.ROSTER, kind, raw_send_id(obj))
    assert info.value.msg_id is None


# --- server frames (what a client decodes) ---------------------------------------------------
@relaxed
@given(st.data(), server_fields)
def test_a_server_integer_inside_its_bounds_is_taken(data: st.DataObject, name: str) -> None:
    """v1.2 adds `sent.msg_id` (1..), and markers, `rooms[].last`, `read.upto` (0.., 0 for
    none), `markers[].unread` (0..1000) and `room_list[].members` (a count)."""
    field = SERVER_FIELDS[name]
    value = data.draw(inside(field.bounds))
    assert field.read(parse_server_message(server_frame(name, value))) == value


@relaxed
@given(st.data(), server_fields)
def test_a_server_integer_outside_its_bounds_or_no_int_is_refused(
    data: st.DataObject, name: str
) -> None:
    field = SERVER_FIELDS[name]
    value = data.draw(outside(field.bounds) | not_ints)
    refused(server_frame(name, value), parse_server_message)


@relaxed
@given(
    st.one_of(
        st.floats(max_value=TS_BOUNDS[0], exclude_max=True, allow_infinity=False),
        st.floats(min_value=TS_BOUNDS[1], exclude_min=True, allow_infinity=False),
        st.integers(min_value=int(TS_BOUNDS[1]) + 1),
    ).filter(lambda v: v == v)  # NaN and infinities cannot be written as JSON
)
def test_a_msg_ts_outside_year_0_to_9999_is_refused(ts: float) -> None:
    refused(raw(MSG | {"ts": ts}), parse_server_message)


@pytest.mark.parametrize("ts", [TS_BOUNDS[0], TS_BOUNDS[1], 1700000000.25, 0])
def test_a_msg_ts_inside_its_bounds_is_taken(ts: float) -> None:
    assert parse_server_message(raw(MSG | {"ts": ts})).ts == ts


@relaxed
@given(bad_client_ids, st.sampled_from(["sent", "history", "error"]))
def test_a_server_frame_echoing_an_id_no_client_could_send_is_refused(
    msg_id: Any, kind: str
) -> None:
    obj = {
        "sent": {"delivered": [], "missing": [], "queued": []},
        "history": {"messages": [], "more": False},
        "error": {"code": "bad_request", "message": "x"},
    }[kind]
    refused(raw({"type": kind, "id": msg_id} | obj), parse_server_message)


def test_an_error_without_an_id_is_still_an_error() -> None:
    got = parse_server_message(raw({"type": "error", "code": "bad_request", "message": "x"}))
    assert got.id is None
