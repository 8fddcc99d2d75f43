"""ServerConnection and ClientConnection driving each other with plain bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.connection import MAX_FAILED_AUTHS, ClientConnection, ServerConnection
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.framing import encode_frame
from chat.shared.messages import (
    Auth,
    AuthOk,
    ClientBye,
    Ping,
    Roster,
    RosterAck,
    Send,
    encode,
)
from chat.shared.states import State

from .strategies import relaxed, server_messages


def pump_to_server(data: bytes, server: ServerConnection, byte_by_byte: bool = False) -> list:
    events = []
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    for chunk in chunks:
        server.receive_data(chunk)
        while (event := server.next_event()) is not None:
            events.append(event)
    return events


def pump_to_client(data: bytes, client: ClientConnection) -> list:
    client.receive_data(data)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def logged_in(online: list[str] | None = None) -> tuple[ClientConnection, ServerConnection]:
    """Run a whole login and first roster ack; both ends end in CHAT."""
    client, server = ClientConnection(), ServerConnection()
    [auth] = pump_to_server(client.send(Auth("alice", "pw", register=True)), server)
    assert auth == Auth("alice", "pw", True)
    ok, full = server.auth_succeeded(auth.user, online or [])
    events = pump_to_client(encode(ok) + encode(full), client)
    assert events == [AuthOk("alice"), Roster(1, True, users=tuple(online or []))]
    assert client.state is State.ROSTER and server.state is State.ROSTER
    [ack] = pump_to_server(client.send(RosterAck(1)), server)
    assert server.roster_acked(ack) == (True, None)
    return client, server


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_login_moves_both_ends_from_auth_through_roster_to_chat(byte_by_byte: bool) -> None:
    client, server = ClientConnection(), ServerConnection()
    assert client.state is server.state is State.AUTH
    [auth] = pump_to_server(client.send(Auth("alice", "pw")), server, byte_by_byte)
    ok, full = server.auth_succeeded(auth.user, ["bob"])
    assert server.user == "alice"
    pump_to_client(encode(ok) + encode(full), client)
    assert client.user == "alice" and client.roster.online == {"bob"}
    [ack] = pump_to_server(client.send(RosterAck(1)), server, byte_by_byte)
    assert client.state is State.CHAT
    assert server.roster_acked(ack) == (True, None)
    assert server.state is State.CHAT


def test_roster_deltas_flow_and_are_acked_in_chat() -> None:
    client, server = logged_in(["bob"])
    delta = server.roster.joined("carol")
    assert delta is not None
    assert server.roster.left("bob") is None  # delta 2 in flight
    pump_to_client(encode(delta), client)
    assert client.roster.online == {"bob", "carol"}
    [ack] = pump_to_server(client.send(RosterAck(2)), server)
    entered, coalesced = server.roster_acked(ack)
    assert not entered and coalesced == Roster(3, False, join=(), leave=("bob",))
    pump_to_client(encode(coalesced), client)
    assert client.roster.online == {"carol"}


def test_send_before_the_roster_ack_is_not_ready_with_the_id() -> None:
    client, server = ClientConnection(), ServerConnection()
    pump_to_server(client.send(Auth("alice", "pw")), server)
    server.auth_succeeded("alice", [])
    server.receive_data(encode(Send("m7", "*", "hi")))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is Code.NOT_READY and info.value.msg_id == "m7"
    assert server.state is State.ROSTER


def test_send_before_login_is_not_authenticated_with_the_id() -> None:
    server = ServerConnection()
    server.receive_data(encode(Send(5, ["bob"], "hi")) + encode(Ping()))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is Code.NOT_AUTHENTICATED and info.value.msg_id == 5
    assert server.next_event() == Ping()  # the connection survives


def test_auth_after_login_is_bad_request() -> None:
    _, server = logged_in()
    server.receive_data(encode(Auth("alice", "pw")))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is Code.BAD_REQUEST and info.value.message == "already logged in"


def test_unknown_type_after_login_is_non_fatal_bad_request() -> None:
    _, server = logged_in()
    server.receive_data(encode_frame(b'{"type":""}') + encode(ClientBye()))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is Code.BAD_REQUEST and not info.value.fatal
    assert server.next_event() == ClientBye()


def test_wrong_first_ack_is_bad_request_and_stays_in_roster() -> None:
    server = ServerConnection()
    server.auth_succeeded("alice", [])
    with pytest.raises(RemoteProtocolError) as info:
        server.roster_acked(RosterAck(2))
    assert info.value.code is Code.BAD_REQUEST
    assert server.state is State.ROSTER
    assert server.roster_acked(RosterAck(1)) == (True, None)


def test_fifth_failed_login_is_too_many_attempts() -> None:
    server = ServerConnection()
    for _ in range(MAX_FAILED_AUTHS - 1):
        server.auth_failed()
    with pytest.raises(RemoteProtocolError) as info:
        server.auth_failed()
    assert MAX_FAILED_AUTHS == 5
    assert info.value.code is Code.TOO_MANY_ATTEMPTS and info.value.fatal


def test_auth_failure_after_login_is_our_bug() -> None:
    _, server = logged_in()
    with pytest.raises(LocalProtocolError):
        server.auth_failed()


def test_server_refuses_a_frame_over_its_max_from_the_header() -> None:
    server = ServerConnection(max_frame=100)
    server.receive_data((101).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is Code.FRAME_TOO_LARGE


def test_client_accepts_a_roster_far_larger_than_a_server_max_frame() -> None:
    client = ClientConnection()
    users = tuple(f"user{i:06d}" for i in range(100_000))  # about 1.3 MB
    pump_to_client(encode(AuthOk("alice")), client)
    [frame] = pump_to_client(encode(Roster(1, True, users=users)), client)
    assert len(client.roster.online) == 100_000 and frame.users == users


def test_client_refuses_to_send_what_its_state_forbids() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError):
        client.send(Send(1, "*", "hi"))
    with pytest.raises(LocalProtocolError):
        client.send(RosterAck(1))
    client.close()
    with pytest.raises(LocalProtocolError):
        client.send(Ping())


def test_client_sees_a_roster_seq_gap_as_bad_request() -> None:
    client = ClientConnection()
    pump_to_client(encode(AuthOk("a")) + encode(Roster(1, True, users=())), client)
    with pytest.raises(RemoteProtocolError) as info:
        pump_to_client(encode(Roster(3, False, join=("x",))), client)
    assert info.value.code is Code.BAD_REQUEST


def test_closed_server_connection_refuses_further_frames() -> None:
    _, server = logged_in()
    server.close()
    assert server.state is State.CLOSED
    server.receive_data(encode(Ping()))
    with pytest.raises(LocalProtocolError):
        server.next_event()


def test_a_second_auth_ok_is_the_servers_error_not_ours() -> None:
    client = ClientConnection()
    pump_to_client(encode(AuthOk("a")), client)
    with pytest.raises(RemoteProtocolError) as info:
        pump_to_client(encode(AuthOk("a")), client)
    assert info.value.code is Code.BAD_REQUEST
    assert client.state is State.ROSTER


@relaxed
@given(st.lists(server_messages, max_size=8), st.integers(min_value=1, max_value=7))
def test_any_server_frame_sequence_raises_only_remote_errors_at_the_client(
    messages: list, chunk: int
) -> None:
    client = ClientConnection()
    stream = b"".join(encode(m) for m in messages)
    try:
        for i in range(0, len(stream), chunk):
            pump_to_client(stream[i : i + chunk], client)
    except RemoteProtocolError as exc:
        assert exc.code is Code.BAD_REQUEST
