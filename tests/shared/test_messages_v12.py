"""The frames protocol v1.2 adds and the fields it adds to older frames: each field's
rule, each bound just inside and just outside, the error (with the id, or without an
invalid one), and the exact wire objects of the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.errors import (
    DEFAULT_MESSAGES,
    FATAL_CODES,
    Code,
    LocalProtocolError,
    RemoteProtocolError,
    Why,
)
from chat.shared.features import FEATURE_NAME_MAX, FEATURES_MAX
from chat.shared.messages import (
    ID_TYPES,
    INVITE_MAX,
    PASSWORD_MAX,
    TOKEN_MAX,
    V11_CLIENT_TYPES,
    V12_CLIENT_TYPES,
    Auth,
    AuthOk,
    DeleteAccount,
    Error,
    HistoryRequest,
    Invitation,
    Marker,
    Markers,
    Msg,
    Ok,
    Passwd,
    Read,
    ReadNotice,
    RoomCreate,
    RoomEvent,
    RoomEventKind,
    RoomInfo,
    RoomInvite,
    RoomJoin,
    RoomKick,
    RoomLeave,
    RoomList,
    RoomListRequest,
    Rooms,
    RoomSent,
    RoomState,
    RoomTopic,
    Send,
    Sent,
    ServerBye,
    Typing,
    TypingNotice,
    Users,
    UserSearch,
    encode,
    encode_delivery,
    encode_msgs,
    encode_names,
    encode_payload,
    encode_room_delivery,
    encode_room_sents,
    encode_sents,
    parse_client_message,
    parse_server_message,
)
from chat.shared.notices import UNREAD_MAX
from chat.shared.requests import PREFIX_MAX
from chat.shared.rooms import TOPIC_MAX, room_key, valid_room

from .strategies import msg_ids, name_lists, relaxed, rooms, server_ids

EMOJI = "\U0001f600"  # one code point, 4 bytes of UTF-8


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def parse(obj: dict[str, Any]) -> Any:
    return parse_client_message(raw(obj))


def refused(obj: dict[str, Any]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse(obj)
    assert info.value.code is Code.BAD_REQUEST and not info.value.fatal
    return info.value


def server_refused(obj: dict[str, Any]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_server_message(raw(obj))
    assert info.value.code is Code.BAD_REQUEST
    return info.value


def wire(message: Any) -> dict[str, Any]:
    return json.loads(encode_payload(message))


# --------------------------------------------------------------------------------------
# Every v1.2 request: a minimal valid frame, what it parses to, its required fields
# --------------------------------------------------------------------------------------
REQUESTS: dict[str, tuple[dict[str, Any], Any, tuple[str, ...]]] = {
    "room_create": ({"id": "r1", "room": "#dev"}, RoomCreate("r1", "#dev", "", False), ("room",)),
    "join": ({"id": "r1", "room": "#dev"}, RoomJoin("r1", "#dev"), ("room",)),
    "leave": ({"id": "r1", "room": "#dev"}, RoomLeave("r1", "#dev"), ("room",)),
    "invite": (
        {"id": "r1", "room": "#dev", "user": "bob"},
        RoomInvite("r1", "#dev", "bob"),
        ("room", "user"),
    ),
    "kick": (
        {"id": "r1", "room": "#dev", "user": "bob"},
        RoomKick("r1", "#dev", "bob"),
        ("room", "user"),
    ),
    "topic": (
        {"id": "r1", "room": "#dev", "topic": "hi"},
        RoomTopic("r1", "#dev", "hi"),
        ("room", "topic"),
    ),
    "room_list": ({"id": "r1"}, RoomListRequest("r1"), ()),
    "read": ({"with": "#dev", "upto": 7}, Read("#dev", 7), ("with", "upto")),
    "typing": ({"to": "bob", "state": "active"}, Typing("bob", "active"), ("to", "state")),
    "passwd": (
        {"id": "r1", "old": "a", "new": "b"},
        Passwd("r1", "a", "b", False),
        ("old", "new"),
    ),
    "delete_account": ({"id": "r1", "password": "a"}, DeleteAccount("r1", "a"), ("password",)),
    "user_search": ({"id": "r1", "prefix": "bo"}, UserSearch("r1", "bo"), ("prefix",)),
}
WITH_ID = sorted(k for k in REQUESTS if "id" in REQUESTS[k][0])


def request(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind} | REQUESTS[kind][0] | fields


def test_the_table_covers_every_v12_client_frame_and_no_other() -> None:
    assert set(REQUESTS) == V12_CLIENT_TYPES
    assert not V11_CLIENT_TYPES & V12_CLIENT_TYPES
    assert {k for k in V12_CLIENT_TYPES if k in ID_TYPES} == set(WITH_ID)
    assert "read" not in ID_TYPES and "typing" not in ID_TYPES  # no id in the contract


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_a_minimal_request_parses_with_its_defaults_and_encodes_back(kind: str) -> None:
    message = parse(request(kind))
    assert message == REQUESTS[kind][1]
    assert parse(wire(message)) == message


@pytest.mark.parametrize(
    ("kind", "key"), [(k, f) for k in sorted(REQUESTS) for f in REQUESTS[k][2]], ids=str
)
def test_a_missing_or_null_field_is_bad_request_with_the_id(kind: str, key: str) -> None:
    obj = request(kind)
    del obj[key]
    echo = "r1" if kind in WITH_ID else None
    assert refused(obj).msg_id == echo
    assert refused(request(kind, **{key: None})).msg_id == echo


@pytest.mark.parametrize("kind", WITH_ID)
@pytest.mark.parametrize("msg_id", [None, 1.5, True, [1], "x" * 129, 2**53])
def test_a_request_with_an_invalid_id_is_bad_request_without_echo(kind: str, msg_id: Any) -> None:
    assert refused(request(kind, id=msg_id)).msg_id is None
    obj = request(kind)
    del obj["id"]
    assert refused(obj).msg_id is None


@relaxed
@given(st.sampled_from(WITH_ID), msg_ids)
def test_every_error_about_a_request_echoes_its_valid_id_unchanged(kind: str, msg_id: Any) -> None:
    field = REQUESTS[kind][2][0] if REQUESTS[kind][2] else None
    obj = request(kind, id=msg_id)
    if field is None:  # room_list: nothing to get wrong but the id
        assert parse(obj).id == msg_id
        return
    err = refused(obj | {field: 12})
    assert err.msg_id == msg_id and type(err.msg_id) is type(msg_id)


# --- rooms ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "room", ["#a", "#0", "#" + "a" * 32, "#A.b_c-d", "#Dev", "#" + "9" * 32], ids=str
)
def test_a_room_name_is_hash_then_a_user_name(room: str) -> None:
    assert valid_room(room)
    assert parse(request("join", room=room)) == RoomJoin("r1", room)


@pytest.mark.parametrize(
    "room",
    ["#", "dev", "##dev", "#.dev", "#_dev", "#-dev", "#" + "a" * 33, "#dé", "#a b", " #a", "#a\n"],
    ids=repr,
)
@pytest.mark.parametrize("kind", ["room_create", "join", "leave", "invite", "kick", "topic"])
def test_a_bad_room_name_is_bad_request_with_the_id(kind: str, room: str) -> None:
    assert not valid_room(room)
    err = refused(request(kind, room=room))
    assert err.msg_id == "r1" and "room" in err.message


@pytest.mark.parametrize("room", [7, ["#a"], {"room": "#a"}, True])
def test_a_room_that_is_not_a_string_is_bad_request(room: Any) -> None:
    assert refused(request("join", room=room)).msg_id == "r1"


def test_room_names_that_differ_only_in_case_have_one_key() -> None:
    assert room_key("#Dev") == room_key("#dev") == room_key("#DEV") == "#dev"
    assert room_key("#a.B-c_D") == "#a.b-c_d"


@pytest.mark.parametrize("kind", ["room_create", "topic"])
@pytest.mark.parametrize("topic", ["", "x" * TOPIC_MAX, EMOJI * TOPIC_MAX, "line\nbreak"])
def test_a_topic_of_0_to_300_code_points_is_taken(kind: str, topic: str) -> None:
    assert parse(request(kind, topic=topic)).topic == topic


@pytest.mark.parametrize("kind", ["room_create", "topic"])
@pytest.mark.parametrize("topic", ["x" * (TOPIC_MAX + 1), EMOJI * (TOPIC_MAX + 1), 5, True])
def test_a_topic_too_long_or_not_a_string_is_bad_request_with_the_id(kind: str, topic: Any) -> None:
    assert refused(request(kind, topic=topic)).msg_id == "r1"


def test_room_create_takes_its_optional_fields() -> None:
    got = parse(request("room_create", topic="t", invite_only=True))
    assert got == RoomCreate("r1", "#dev", "t", True)
    assert wire(got) == {
        "type": "room_create",
        "id": "r1",
        "room": "#dev",
        "topic": "t",
        "invite_only": True,
    }


@pytest.mark.parametrize("value", [None, 1, "true", 0])
def test_room_create_invite_only_must_be_a_boolean(value: Any) -> None:
    assert refused(request("room_create", invite_only=value)).msg_id == "r1"


@pytest.mark.parametrize("kind", ["invite", "kick"])
@pytest.mark.parametrize("user", ["", "#bob", "a" * 33, "bo b", 5, None])
def test_invite_and_kick_name_a_valid_user(kind: str, user: Any) -> None:
    assert refused(request(kind, user=user)).msg_id == "r1"


def test_kicking_oneself_parses_the_server_refuses_it() -> None:
    # Only the server knows who the connection is (errors.Refusal.KICK_SELF).
    assert parse(request("kick", user="alice")) == RoomKick("r1", "#dev", "alice")


# --- send, history and msg with a room ----------------------------------------------
def test_send_to_a_room_is_a_string_and_keeps_star_and_lists() -> None:
    base = {"type": "send", "id": 3, "text": "hi"}
    assert parse(base | {"to": "#dev"}) == Send(3, "#dev", "hi")
    assert parse(base | {"to": "*"}) == Send(3, "*", "hi")
    assert parse(base | {"to": ["bob", "carol"]}) == Send(3, ("bob", "carol"), "hi")
    assert wire(Send(3, "#dev", "hi"))["to"] == "#dev"


@pytest.mark.parametrize("to", ["#", "#" + "a" * 33, "#a b", "bob", "", ["#dev"], [], None])
def test_send_to_a_bad_room_or_a_bare_name_is_bad_request_with_the_id(to: Any) -> None:
    assert refused({"type": "send", "id": 3, "to": to, "text": "hi"}).msg_id == 3


@pytest.mark.parametrize("peer", ["*", "bob", "#dev"])
def test_history_with_a_room_or_a_user_or_everyone(peer: str) -> None:
    got = parse({"type": "history", "id": "h", "with": peer})
    assert got == HistoryRequest("h", peer, None, 50)


def test_a_msg_to_a_room_carries_the_room_as_a_string() -> None:
    m = Msg(9, "alice", "#dev", "hi", 1.5)
    assert wire(m) == {
        "type": "msg",
        "id": 9,
        "from": "alice",
        "to": "#dev",
        "text": "hi",
        "ts": 1.5,
    }
    assert parse_server_message(encode_payload(m)) == m
    assert encode_msgs([m]) == encode(m)


@pytest.mark.parametrize("to", ["#", "bob", "#a b", 5])
def test_a_msg_to_a_string_that_is_no_room_is_refused_by_the_client(to: Any) -> None:
    server_refused({"type": "msg", "id": 1, "from": "a", "to": to, "text": "x", "ts": 1.0})


# --- read ----------------------------------------------------------------------------
@pytest.mark.parametrize("peer", ["*", "bob", "#dev"])
def test_read_names_everyone_a_user_or_a_room(peer: str) -> None:
    assert parse({"type": "read", "with": peer, "upto": 5}) == Read(peer, 5)
    assert wire(Read(peer, 5)) == {"type": "read", "with": peer, "upto": 5}


@pytest.mark.parametrize("peer", ["", "#", "a b", "**", ["bob"], None, 3])
def test_read_with_anything_else_is_bad_request_without_an_id(peer: Any) -> None:
    assert refused({"type": "read", "with": peer, "upto": 5, "id": "x"}).msg_id is None


# --- typing --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("to", "got"),
    [("bob", "bob"), ("#dev", "#dev"), (["bob"], ("bob",)), (["bob", "carol"], ("bob", "carol"))],
)
@pytest.mark.parametrize("state", ["active", "paused", "done"])
def test_typing_to_a_user_a_room_or_a_list(to: Any, got: Any, state: str) -> None:
    assert parse({"type": "typing", "to": to, "state": state}) == Typing(got, state)
    assert parse(wire(Typing(got, state))) == Typing(got, state)


@pytest.mark.parametrize("to", ["*", "", [], ["*"], ["#dev"], "#", 5, None, {"a": 1}])
def test_typing_to_anything_else_is_bad_request(to: Any) -> None:
    assert refused({"type": "typing", "to": to, "state": "active"}).msg_id is None


@pytest.mark.parametrize("state", ["Active", "typing", "", None, 1, ["active"], {"a": 1}])
def test_typing_state_is_one_of_three(state: Any) -> None:
    refused({"type": "typing", "to": "bob", "state": state})


# --- passwd, delete_account, user_search ---------------------------------------------
@pytest.mark.parametrize("key", ["old", "new"])
@pytest.mark.parametrize("value", ["x", "x" * PASSWORD_MAX, EMOJI * PASSWORD_MAX])
def test_passwd_passwords_of_1_to_256_code_points(key: str, value: str) -> None:
    assert getattr(parse(request("passwd", **{key: value})), key) == value


@pytest.mark.parametrize("key", ["old", "new"])
@pytest.mark.parametrize("value", ["", "x" * (PASSWORD_MAX + 1), 5, ["x"]])
def test_passwd_password_out_of_bounds_is_bad_request_with_the_id(key: str, value: Any) -> None:
    assert refused(request("passwd", **{key: value})).msg_id == "r1"


def test_passwd_logout_others_is_an_optional_boolean() -> None:
    assert parse(request("passwd", logout_others=True)).logout_others is True
    for bad in (None, 1, "yes"):
        assert refused(request("passwd", logout_others=bad)).msg_id == "r1"


@pytest.mark.parametrize("value", ["", "x" * (PASSWORD_MAX + 1), 5])
def test_delete_account_password_out_of_bounds_is_bad_request(value: Any) -> None:
    assert refused(request("delete_account", password=value)).msg_id == "r1"
    assert parse(request("delete_account", password="x" * PASSWORD_MAX)).password


def test_no_password_in_the_repr_of_passwd_or_delete_account() -> None:
    assert "s3cret" not in repr(Passwd("r", "s3cret", "s3cret2"))
    assert "s3cret" not in repr(DeleteAccount("r", "s3cret"))


@pytest.mark.parametrize("prefix", ["", "b", "x" * PREFIX_MAX, EMOJI * PREFIX_MAX, "#?*"])
def test_user_search_prefix_of_0_to_32_code_points(prefix: str) -> None:
    assert parse(request("user_search", prefix=prefix)) == UserSearch("r1", prefix)


@pytest.mark.parametrize("prefix", ["x" * (PREFIX_MAX + 1), EMOJI * (PREFIX_MAX + 1), 5, None])
def test_user_search_prefix_out_of_bounds_is_bad_request_with_the_id(prefix: Any) -> None:
    assert refused(request("user_search", prefix=prefix)).msg_id == "r1"


# --------------------------------------------------------------------------------------
# auth: features, token, invite
# --------------------------------------------------------------------------------------
def auth(**fields: Any) -> dict[str, Any]:
    return {"type": "auth", "user": "alice", "password": "pw"} | fields


def test_auth_without_features_is_a_v11_auth() -> None:
    got = parse(auth())
    assert got == Auth("alice", "pw", False) and got.features is None and got.token is None
    # The wire of a v1.1 auth is unchanged, byte for byte.
    assert encode_payload(Auth("alice", "pw")) == (
        b'{"type":"auth","user":"alice","password":"pw","register":false}'
    )


@pytest.mark.parametrize(
    "features",
    [
        [],
        ["rooms"],
        ["typing", "rooms", "bogus", "rooms"],  # order, unknown names and repeats kept
        ["x" * FEATURE_NAME_MAX] * FEATURES_MAX,
        [""],
        [EMOJI * FEATURE_NAME_MAX],
    ],
)
def test_auth_features_are_kept_as_asked(features: list[str]) -> None:
    got = parse(auth(features=features))
    assert got.features == tuple(features)
    assert parse(wire(got)) == got


@pytest.mark.parametrize(
    "features",
    [
        "rooms",
        None,
        [1],
        [["rooms"]],
        {"rooms": True},
    ],
    ids=lambda v: repr(v)[:30],
)
def test_auth_features_ill_typed_is_bad_request(features: Any) -> None:
    assert refused(auth(features=features)).msg_id is None


@pytest.mark.parametrize(
    ("features", "kept"),
    [
        (["x"] * (FEATURES_MAX + 1), ["x"] * FEATURES_MAX),
        (["x" * (FEATURE_NAME_MAX + 1), "rooms"], ["rooms"]),
        ([EMOJI * (FEATURE_NAME_MAX + 1)], []),
        (
            [f"f{i}" for i in range(40)] + ["read"],
            [f"f{i}" for i in range(FEATURES_MAX)] + ["read"],
        ),
    ],
    ids=["too-many", "too-long", "too-long-emoji", "known-after-many"],
)
def test_auth_features_past_the_bounds_are_dropped_never_refused(
    features: list[str], kept: list[str]
) -> None:
    assert parse(auth(features=features)).features == tuple(kept)


def test_auth_with_a_token_and_no_password_logs_in_without_register() -> None:
    obj = {"type": "auth", "user": "alice", "token": "t0k", "features": ["resume"]}
    got = parse(obj)
    assert got == Auth("alice", None, False, ("resume",), "t0k")
    assert wire(got) == obj  # no password, no register on the wire
    assert parse(obj | {"register": False}) == got


@pytest.mark.parametrize("token", ["t", "x" * TOKEN_MAX, EMOJI * TOKEN_MAX])
def test_auth_token_of_1_to_512_characters(token: str) -> None:
    assert parse({"type": "auth", "user": "alice", "token": token}).token == token


@pytest.mark.parametrize("token", ["", "x" * (TOKEN_MAX + 1), None, 5, ["t"]])
def test_auth_token_out_of_bounds_or_ill_typed_is_bad_request(token: Any) -> None:
    refused({"type": "auth", "user": "alice", "token": token})


@pytest.mark.parametrize("password", ["pw", None, ""])
def test_auth_with_both_password_and_token_is_bad_request(password: Any) -> None:
    err = refused(auth(password=password, token="t0k"))
    assert "not both" in err.message


def test_auth_with_a_token_cannot_register() -> None:
    refused({"type": "auth", "user": "alice", "token": "t0k", "register": True})


def test_auth_with_neither_password_nor_token_is_bad_request() -> None:
    refused({"type": "auth", "user": "alice"})


@pytest.mark.parametrize("invite", ["c", "x" * INVITE_MAX])
def test_auth_invite_is_kept_for_the_server(invite: str) -> None:
    got = parse(auth(register=True, invite=invite))
    assert got.invite == invite and got.register
    assert parse(wire(got)) == got


@pytest.mark.parametrize("invite", ["", "x" * (INVITE_MAX + 1), None, 5])
def test_auth_invite_out_of_bounds_or_ill_typed_is_bad_request(invite: Any) -> None:
    refused(auth(register=True, invite=invite))


def test_no_password_token_or_invite_in_the_repr_of_auth() -> None:
    text = repr(Auth("alice", "s3cret", True, ("rooms",), None, "inv1te"))
    text += repr(Auth("alice", None, False, None, "t0ken"))
    text += repr(AuthOk("alice", ("resume",), "t0ken"))
    assert "s3cret" not in text and "t0ken" not in text and "inv1te" not in text
    assert "alice" in text and "rooms" in text


# --------------------------------------------------------------------------------------
# Server frames: the contract's wire objects, and what a client accepts
# --------------------------------------------------------------------------------------
def test_auth_ok_without_features_is_byte_for_byte_v11() -> None:
    assert encode_payload(AuthOk("alice")) == b'{"type":"auth_ok","user":"alice"}'
    assert parse_server_message(b'{"type":"auth_ok","user":"alice"}') == AuthOk("alice")


def test_auth_ok_with_features_and_a_token() -> None:
    ok = AuthOk("alice", ("rooms", "resume"), "t0k")
    assert wire(ok) == {
        "type": "auth_ok",
        "user": "alice",
        "features": ["rooms", "resume"],
        "token": "t0k",
    }
    assert parse_server_message(encode_payload(ok)) == ok
    assert wire(AuthOk("alice", ())) == {"type": "auth_ok", "user": "alice", "features": []}


@pytest.mark.parametrize(
    "fields", [{"features": "rooms"}, {"features": [1]}, {"token": ""}, {"token": 5}]
)
def test_auth_ok_with_ill_typed_features_or_token_is_refused(fields: dict[str, Any]) -> None:
    server_refused({"type": "auth_ok", "user": "alice"} | fields)


def test_every_sent_carries_msg_id_after_the_v11_fields() -> None:
    v11 = encode_payload(Sent(1, ("bob",), ("zed",), ("zed",)))
    v12 = encode_payload(Sent(1, ("bob",), ("zed",), ("zed",), 42))
    assert v12 == v11[:-1] + b',"msg_id":42}'
    assert parse_server_message(v12) == Sent(1, ("bob",), ("zed",), ("zed",), 42)
    assert parse_server_message(v11).msg_id is None  # a v1.1 server's sent


def test_a_room_sent_has_id_msg_id_and_room_and_no_name_lists() -> None:
    sent = RoomSent("m1", 42, "#dev")
    assert wire(sent) == {"type": "sent", "id": "m1", "msg_id": 42, "room": "#dev"}
    assert parse_server_message(encode_payload(sent)) == sent


@pytest.mark.parametrize(
    "fields",
    [
        {"msg_id": 0},
        {"msg_id": 2**53},
        {"msg_id": None},
        {"msg_id": "42"},
        {"room": "dev"},
        {"room": 5},
    ],
)
def test_a_room_sent_with_a_bad_msg_id_or_room_is_refused(fields: dict[str, Any]) -> None:
    server_refused({"type": "sent", "id": 1, "msg_id": 42, "room": "#dev"} | fields)
    if "msg_id" in fields and fields["msg_id"] is not None:
        server_refused({"type": "sent", "id": 1, "delivered": [], "missing": []} | fields)


@relaxed
@given(
    st.lists(st.tuples(msg_ids, server_ids), min_size=1, max_size=4),
    name_lists,
    name_lists,
    name_lists,
)
def test_sents_with_msg_ids_are_byte_for_byte_the_frames_of_each(
    sends: list[tuple[Any, int]],
    delivered: tuple[str, ...],
    missing: tuple[str, ...],
    queued: tuple[str, ...],
) -> None:
    ids, stored = [i for i, _ in sends], [m for _, m in sends]
    together = encode_sents(ids, encode_names(delivered), missing, queued, stored)
    assert together == b"".join(encode(Sent(i, delivered, missing, queued, m)) for i, m in sends)


@relaxed
@given(st.lists(st.tuples(msg_ids, server_ids), min_size=1, max_size=4), rooms)
def test_room_sents_are_byte_for_byte_the_frames_of_each(
    sends: list[tuple[Any, int]], room: str
) -> None:
    ids, stored = [i for i, _ in sends], [m for _, m in sends]
    together = encode_room_sents(ids, stored, room)
    assert together == b"".join(encode(RoomSent(i, m, room)) for i, m in sends)


def test_encode_delivery_gives_the_ith_sent_the_ith_messages_id() -> None:
    msgs = (Msg(10, "alice", ("bob",), "a", 1.0), Msg(11, "alice", ("bob",), "b", 1.0))
    blob, sents = encode_delivery(msgs, ["x", 7], encode_names(["bob"]), [], [])
    assert blob == encode_msgs(msgs)
    assert sents == encode(Sent("x", ("bob",), (), (), 10)) + encode(Sent(7, ("bob",), (), (), 11))


def test_encode_room_delivery_gives_the_msgs_and_the_room_sents() -> None:
    msgs = (Msg(10, "alice", "#dev", "a", 1.0), Msg(11, "alice", "#dev", "b", 1.0))
    blob, sents = encode_room_delivery(msgs, ["x", 7], "#dev")
    assert blob == encode(msgs[0]) + encode(msgs[1])
    assert sents == encode(RoomSent("x", 10, "#dev")) + encode(RoomSent(7, 11, "#dev"))


def test_sents_and_messages_that_do_not_pair_up_never_reach_the_wire() -> None:
    msgs = (Msg(10, "alice", ("bob",), "a", 1.0),)
    with pytest.raises(ValueError):
        encode_delivery(msgs, ["x", "y"], [], [], [])
    with pytest.raises(ValueError):
        encode_sents(["x"], [], [], [], [1, 2])
    with pytest.raises(TypeError):  # a msg id that is not a number
        encode_sents(["x"], [], [], [], ["10"])
    with pytest.raises(ValueError):
        encode_room_sents(["x", "y"], [1], "#dev")


def test_ok_and_users_answer_with_the_id() -> None:
    assert wire(Ok("r1")) == {"type": "ok", "id": "r1"}
    users = Users(3, ("bob", "bobby"), True)
    assert wire(users) == {"type": "users", "id": 3, "users": ["bob", "bobby"], "more": True}
    for frame in (Ok("r1"), users):
        assert parse_server_message(encode_payload(frame)) == frame


def test_room_list_entries_have_every_field_of_the_contract() -> None:
    info = RoomInfo("#dev", "t", False, "alice", 3, True, False)
    frame = RoomList("r1", (info,))
    assert wire(frame) == {
        "type": "room_list",
        "id": "r1",
        "rooms": [
            {
                "room": "#dev",
                "topic": "t",
                "invite_only": False,
                "owner": "alice",
                "members": 3,
                "member": True,
                "invited": False,
            }
        ],
    }
    assert parse_server_message(encode_payload(frame)) == frame


def test_rooms_lists_member_names_last_and_invites() -> None:
    frame = Rooms(
        (RoomState("#dev", "", True, "alice", ("alice", "bob"), 0),),
        (Invitation("#ops", "carol"),),
    )
    assert wire(frame) == {
        "type": "rooms",
        "rooms": [
            {
                "room": "#dev",
                "topic": "",
                "invite_only": True,
                "owner": "alice",
                "members": ["alice", "bob"],
                "last": 0,
            }
        ],
        "invites": [{"room": "#ops", "by": "carol"}],
    }
    assert parse_server_message(encode_payload(frame)) == frame
    assert wire(Rooms((), ())) == {"type": "rooms", "rooms": [], "invites": []}


@pytest.mark.parametrize(
    ("event", "by", "topic"),
    [
        ("created", None, "t"),
        ("joined", None, None),
        ("left", None, None),
        ("kicked", "alice", None),
        ("invited", "alice", None),
        ("topic", "alice", "new"),
        ("owner", None, None),
        ("deleted", None, None),
    ],
)
def test_room_event_carries_by_and_topic_exactly_where_the_contract_says(
    event: str, by: str | None, topic: str | None
) -> None:
    frame = RoomEvent("#dev", RoomEventKind(event), "bob", 1700000000, by, topic)
    obj = wire(frame)
    assert obj == {"type": "room_event", "room": "#dev", "event": event, "user": "bob"} | {
        "ts": 1700000000.0
    } | ({} if by is None else {"by": by}) | ({} if topic is None else {"topic": topic})
    assert b'"ts":1700000000.0' in encode_payload(frame)  # a float literal, as msg.ts
    assert parse_server_message(encode_payload(frame)) == frame


@pytest.mark.parametrize(
    ("event", "by", "topic"),
    [("joined", "alice", None), ("kicked", None, None), ("topic", "a", None), ("left", None, "t")],
)
def test_a_room_event_with_by_or_topic_out_of_place_is_our_bug(
    event: str, by: str | None, topic: str | None
) -> None:
    with pytest.raises(LocalProtocolError):
        encode(RoomEvent("#dev", event, "bob", 1.0, by, topic))


@pytest.mark.parametrize("ts", [-1, 253402300800, "1", None])
def test_a_room_event_ts_out_of_bounds_is_refused(ts: Any) -> None:
    obj = {"type": "room_event", "room": "#d", "event": "joined", "user": "b", "ts": ts}
    server_refused(obj)


def test_markers_read_and_typing_from_the_server() -> None:
    markers = Markers((Marker("#dev", 4, 9, 5), Marker("bob", 0, 3, UNREAD_MAX)))
    assert wire(markers) == {
        "type": "markers",
        "markers": [
            {"with": "#dev", "upto": 4, "last": 9, "unread": 5},
            {"with": "bob", "upto": 0, "last": 3, "unread": 1000},
        ],
    }
    read = ReadNotice("*", 12)
    assert wire(read) == {"type": "read", "with": "*", "upto": 12}
    typing = TypingNotice("bob", ("alice", "carol"), "paused")
    assert wire(typing) == {
        "type": "typing",
        "from": "bob",
        "to": ["alice", "carol"],
        "state": "paused",
    }
    for frame in (markers, read, typing, TypingNotice("bob", "#dev", "done")):
        assert parse_server_message(encode_payload(frame)) == frame


@pytest.mark.parametrize(
    "marker",
    [
        {"upto": -1},
        {"last": 2**53},
        {"unread": UNREAD_MAX + 1},
        {"unread": -1},
        {"upto": 1.0},
        {"with": 5},
    ],
)
def test_a_marker_out_of_bounds_is_refused(marker: dict[str, Any]) -> None:
    entry = {"with": "bob", "upto": 0, "last": 1, "unread": 0} | marker
    server_refused({"type": "markers", "markers": [entry]})


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ok"},
        {"type": "ok", "id": 1.5},
        {"type": "users", "id": 1, "users": "bob", "more": False},
        {"type": "users", "id": 1, "users": [], "more": None},
        {"type": "room_list", "id": 1, "rooms": [{"room": "#a"}]},
        {"type": "room_list", "id": 1, "rooms": "none"},
        {"type": "rooms", "rooms": [], "invites": [{"room": "#a"}]},
        {"type": "rooms", "rooms": [5], "invites": []},
        {"type": "read", "with": "bob", "upto": -1},
        {"type": "typing", "from": "bob", "to": 5, "state": "active"},
    ],
    ids=lambda f: json.dumps(f)[:50],
)
def test_an_ill_formed_v12_server_frame_is_refused_by_the_client(frame: dict[str, Any]) -> None:
    server_refused(frame)


# --------------------------------------------------------------------------------------
# Errors and bye reasons added by v1.2
# --------------------------------------------------------------------------------------
V12_CODES = {
    "no_such_room": False,
    "room_exists": False,
    "not_member": False,
    "not_allowed": False,
    "no_such_user": False,
    "registration_closed": False,
    "banned": True,
}


@pytest.mark.parametrize(("code", "fatal"), sorted(V12_CODES.items()))
@pytest.mark.parametrize("msg_id", [None, "r1", 0, -(2**53 - 1)])
def test_each_v12_error_code_is_on_the_wire_with_or_without_an_id(
    code: str, fatal: bool, msg_id: Any
) -> None:
    err = RemoteProtocolError(Code(code), msg_id=msg_id)
    assert err.fatal is fatal and (Code(code) in FATAL_CODES) is fatal
    assert err.message == DEFAULT_MESSAGES[Code(code)]
    frame = Error(err.code, err.message, err.msg_id)
    obj = wire(frame)
    assert obj["code"] == code and ("id" in obj) is (msg_id is not None)
    assert parse_server_message(encode_payload(frame)) == frame


def test_no_such_room_says_nothing_of_whether_the_room_exists() -> None:
    text = DEFAULT_MESSAGES[Code.NO_SUCH_ROOM]
    assert "invite" not in text and "exist" not in text


@pytest.mark.parametrize(
    "reason", ["password_changed", "account_deleted", "banned", "kicked", "shutdown"]
)
def test_the_bye_reasons_are_spelled_as_the_contract_does(reason: str) -> None:
    assert reason in {str(w) for w in Why}
    assert wire(ServerBye(Why(reason))) == {"type": "bye", "reason": reason}
