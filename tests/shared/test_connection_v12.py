"""v1.2 through the sans-IO connections: features negotiated at login, frames of features
not granted refused with their id, a v1.1 server that knows no v1.2 frame, every `sent`
with its `msg_id`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from chat.shared.connection import ClientConnection, ServerConnection
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.features import FEATURES
from chat.shared.framing import encode_frame
from chat.shared.messages import (
    V12_CLIENT_TYPES,
    Auth,
    AuthOk,
    HistoryRequest,
    Read,
    RoomCreate,
    RoomJoin,
    RoomSent,
    RosterAck,
    Send,
    Sent,
    Typing,
    UserSearch,
    encode,
    encode_names,
    parse_server_message,
)
from chat.shared.states import State

from .strategies import relaxed, v12_requests

#: One valid frame of each v1.2 client type, as a client writes it.
V12_FRAMES: dict[str, dict[str, Any]] = {
    "room_create": {"id": "r1", "room": "#dev"},
    "join": {"id": "r1", "room": "#dev"},
    "leave": {"id": "r1", "room": "#dev"},
    "invite": {"id": "r1", "room": "#dev", "user": "bob"},
    "kick": {"id": "r1", "room": "#dev", "user": "bob"},
    "topic": {"id": "r1", "room": "#dev", "topic": "t"},
    "room_list": {"id": "r1"},
    "read": {"with": "*", "upto": 3},
    "typing": {"to": "bob", "state": "active"},
    "passwd": {"id": "r1", "old": "a", "new": "b"},
    "delete_account": {"id": "r1", "password": "a"},
    "user_search": {"id": "r1", "prefix": "b"},
}


def frame(kind: str, **fields: Any) -> bytes:
    return encode_frame(json.dumps({"type": kind} | V12_FRAMES[kind] | fields).encode())


def receive(conn: ServerConnection, data: bytes) -> Any:
    """The message, or the error, of one whole frame."""
    try:
        return conn.receive(data[4:])
    except RemoteProtocolError as err:
        return err


def in_chat(
    asked: tuple[str, ...] | None = None, offered: tuple[str, ...] | None = FEATURES
) -> tuple[ServerConnection, bytes]:
    """A server connection logged in and in CHAT: it and its `auth_ok` frame."""
    conn = ServerConnection(offered=offered)
    receive(conn, encode(Auth("alice", "pw", False, asked)))
    ok = conn.login_succeeded("alice")
    conn.roster_acked()
    assert conn.state is State.CHAT
    return conn, ok


# --- a v1.1 server: today's, until it handles v1.2 -----------------------------------------
@pytest.mark.parametrize("kind", sorted(V12_CLIENT_TYPES))
@pytest.mark.parametrize("asked", [None, FEATURES])
def test_a_v11_server_answers_every_v12_frame_as_an_unknown_type(
    kind: str, asked: tuple[str, ...] | None
) -> None:
    conn, ok = in_chat(asked, offered=None)
    assert ok[4:] == b'{"type":"auth_ok","user":"alice"}'  # nothing granted, no field
    err = receive(conn, frame(kind))
    assert isinstance(err, RemoteProtocolError) and err.code is Code.BAD_REQUEST
    assert "unknown type" in err.message
    assert err.msg_id == V12_FRAMES[kind].get("id")


@pytest.mark.parametrize("state", ["AUTH", "ROSTER"])
def test_a_v11_server_knows_no_v12_frame_before_chat_either(state: str) -> None:
    conn = ServerConnection()
    if state == "ROSTER":
        receive(conn, encode(Auth("alice", "pw")))
        conn.login_succeeded("alice")
    err = receive(conn, frame("room_create"))
    assert err.code is Code.BAD_REQUEST and err.msg_id == "r1"


def test_a_v11_server_refuses_a_send_to_a_room_and_a_token_login() -> None:
    conn, _ = in_chat(FEATURES, offered=None)
    err = receive(conn, encode(Send(4, "#dev", "hi")))
    assert err.code is Code.BAD_REQUEST and err.msg_id == 4 and "rooms" in err.message
    fresh = ServerConnection()
    err = receive(fresh, encode(Auth("alice", None, False, ("resume",), "t0k")))
    assert err.code is Code.BAD_REQUEST and "resume" in err.message
    assert fresh.state is State.AUTH  # no login started: the next auth is taken
    assert receive(fresh, encode(Auth("alice", "pw"))) == Auth("alice", "pw")


# --- negotiation ---------------------------------------------------------------------------
def test_a_v11_client_on_a_v12_server_gets_a_v11_auth_ok_and_no_feature() -> None:
    conn, ok = in_chat(None)
    assert ok[4:] == b'{"type":"auth_ok","user":"alice"}'
    assert conn.features == frozenset()


@pytest.mark.parametrize(
    ("asked", "offered", "given"),
    [
        ((), FEATURES, []),
        (("typing", "bogus", "rooms", "typing"), FEATURES, ["typing", "rooms"]),
        (("rooms", "resume"), ("rooms",), ["rooms"]),
        (FEATURES, (), []),
    ],
)
def test_auth_ok_lists_what_is_granted_in_the_order_asked(
    asked: tuple[str, ...], offered: tuple[str, ...], given: list[str]
) -> None:
    conn, ok = in_chat(asked, offered)
    assert json.loads(ok[4:]) == {"type": "auth_ok", "user": "alice", "features": given}
    assert conn.features == frozenset(given)


def test_a_failed_login_forgets_what_it_asked() -> None:
    conn = ServerConnection(offered=FEATURES)
    receive(conn, encode(Auth("alice", "bad", False, ("rooms",))))
    conn.login_failed(RemoteProtocolError(Code.BAD_CREDENTIALS))
    receive(conn, encode(Auth("alice", "pw")))
    assert conn.login_succeeded("alice")[4:] == b'{"type":"auth_ok","user":"alice"}'


# --- frames of features not granted ----------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(V12_CLIENT_TYPES))
def test_each_v12_frame_is_refused_without_its_feature_and_taken_with_it(kind: str) -> None:
    bare, _ = in_chat(())
    got = receive(bare, frame(kind))
    needs_one = kind not in {"passwd", "delete_account", "user_search"}
    if needs_one:
        assert isinstance(got, RemoteProtocolError), got
        assert got.code is Code.BAD_REQUEST and not got.fatal
        assert got.msg_id == V12_FRAMES[kind].get("id") and "not granted" in got.message
    else:
        assert not isinstance(got, RemoteProtocolError), got
    full, _ = in_chat(FEATURES)
    assert not isinstance(receive(full, frame(kind)), RemoteProtocolError)


def test_a_frame_of_a_feature_not_granted_is_refused_for_that_whatever_its_fields() -> None:
    conn, _ = in_chat(("read",))
    err = receive(conn, frame("join", room="not a room"))
    assert err.msg_id == "r1" and "rooms" in err.message


@pytest.mark.parametrize(
    ("message", "feature"),
    [
        (Send(1, "#dev", "hi"), "rooms"),
        (HistoryRequest("h", "#dev"), "rooms"),
        (Read("#dev", 1), "rooms"),
        (Typing("#dev", "active"), "rooms"),
    ],
)
def test_a_room_in_a_field_needs_rooms(message: Any, feature: str) -> None:
    others = tuple(f for f in FEATURES if f != feature)
    conn, _ = in_chat(others)
    err = receive(conn, encode(message))
    assert isinstance(err, RemoteProtocolError) and feature in err.message
    assert err.msg_id == getattr(message, "id", None)
    full, _ = in_chat(FEATURES)
    assert receive(full, encode(message)) == message


def test_sends_to_everyone_and_to_names_need_nothing() -> None:
    conn, _ = in_chat(None)
    assert receive(conn, encode(Send(1, "*", "x"))) == Send(1, "*", "x")
    assert receive(conn, encode(Send(2, ("bob",), "x"))) == Send(2, ("bob",), "x")
    assert receive(conn, encode(UserSearch(3, "b"))) == UserSearch(3, "b")


# --- v1.2 frames outside CHAT: the state first ---------------------------------------------
@pytest.mark.parametrize("kind", sorted(V12_CLIENT_TYPES))
def test_v12_frames_before_login_and_before_the_ack(kind: str) -> None:
    conn = ServerConnection(offered=FEATURES)
    err = receive(conn, frame(kind))
    assert err.code is Code.NOT_AUTHENTICATED and err.msg_id == V12_FRAMES[kind].get("id")
    receive(conn, encode(Auth("alice", "pw", False, FEATURES)))
    conn.login_succeeded("alice")
    err = receive(conn, frame(kind))
    assert err.code is Code.NOT_READY and err.msg_id == V12_FRAMES[kind].get("id")


# --- resume ----------------------------------------------------------------------------------
def test_a_token_login_asking_resume_is_taken_and_its_auth_ok_carries_a_new_token() -> None:
    conn = ServerConnection(offered=FEATURES)
    auth = Auth("alice", None, False, ("rooms", "resume"), "old")
    assert receive(conn, encode(auth)) == auth
    ok = conn.login_succeeded("alice", token="new")
    assert json.loads(ok[4:]) == {
        "type": "auth_ok",
        "user": "alice",
        "features": ["rooms", "resume"],
        "token": "new",
    }


@pytest.mark.parametrize("asked", [None, (), ("rooms",)])
def test_a_token_without_asking_resume_is_bad_request(asked: tuple[str, ...] | None) -> None:
    conn = ServerConnection(offered=FEATURES)
    err = receive(conn, encode(Auth("alice", None, False, asked, "t0k")))
    assert err.code is Code.BAD_REQUEST and "resume" in err.message
    assert conn.state is State.AUTH


def test_a_token_for_a_connection_not_granted_resume_is_our_bug() -> None:
    conn = ServerConnection(offered=FEATURES)
    receive(conn, encode(Auth("alice", "pw", False, ("rooms",))))
    with pytest.raises(LocalProtocolError):
        conn.login_succeeded("alice", token="t0k")
    assert conn.state is State.AUTH  # nothing sent, nothing changed
    conn.login_succeeded("alice")


# --- sent ------------------------------------------------------------------------------------
def test_a_v12_server_writes_msg_id_in_every_sent_and_a_v11_one_may_not() -> None:
    conn, _ = in_chat(None)
    frames = conn.sent(["a", 2], encode_names(["bob"]), [], [], [10, 11])
    assert frames == encode(Sent("a", ("bob",), (), (), 10)) + encode(Sent(2, ("bob",), (), (), 11))
    with pytest.raises(LocalProtocolError):
        conn.sent(["a"], [], [], [])
    old, _ = in_chat(None, offered=None)
    assert old.sent(["a"], [], ["bob"], ["bob"]) == encode(Sent("a", (), ("bob",), ("bob",)))


def test_a_room_sent_goes_only_to_a_rooms_connection() -> None:
    conn, _ = in_chat(("rooms",))
    assert conn.room_sent(["a"], [10], "#dev") == encode(RoomSent("a", 10, "#dev"))
    other, _ = in_chat(("read",))
    with pytest.raises(LocalProtocolError):
        other.room_sent(["a"], [10], "#dev")


# --- the client's side -----------------------------------------------------------------------
def test_the_client_learns_its_features_from_auth_ok_and_sends_only_those() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError):  # a token without asking for resume
        client.send(Auth("alice", None, False, ("rooms",), "t0k"))
    client.send(Auth("alice", "pw", False, ("rooms", "typing")))
    client.receive_data(encode(AuthOk("alice", ("rooms",))))
    assert isinstance(client.next_event(), AuthOk)
    assert client.features == frozenset({"rooms"})
    client.send(RosterAck(1))
    assert client.state is State.CHAT
    client.send(RoomJoin("r1", "#dev"))
    client.send(Send(1, "#dev", "hi"))
    with pytest.raises(LocalProtocolError):
        client.send(Typing("bob", "active"))  # asked, not granted
    with pytest.raises(LocalProtocolError):
        client.send(Read("*", 1))


def test_a_v12_client_on_a_v11_server_has_no_feature() -> None:
    client = ClientConnection()
    client.send(Auth("alice", "pw", False, FEATURES))
    client.receive_data(encode(AuthOk("alice")))
    client.next_event()
    client.send(RosterAck(1))
    assert client.features == frozenset()
    with pytest.raises(LocalProtocolError):
        client.send(RoomCreate("r1", "#dev"))


@relaxed
@given(v12_requests)
def test_every_v12_request_a_client_sends_reaches_the_server_as_sent(message: Any) -> None:
    client, conn = ClientConnection(), ServerConnection(offered=FEATURES)
    receive(conn, client.send(Auth("alice", "pw", False, FEATURES)))
    client.receive_data(conn.login_succeeded("alice"))
    client.next_event()
    receive(conn, client.send(RosterAck(1)))
    conn.roster_acked()
    assert receive(conn, client.send(message)) == message


def test_the_servers_room_frames_parse_at_the_client() -> None:
    sent = parse_server_message(encode(RoomSent(1, 9, "#dev"))[4:])
    assert sent == RoomSent(1, 9, "#dev")
