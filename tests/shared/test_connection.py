"""ServerConnection and ClientConnection driving each other with plain bytes.

The server connection makes every transition from what it is fed; these tests
feed it as the server does (frames cut by a FrameDecoder) and check both ends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.shared.connection import MAX_FAILED_AUTHS, ClientConnection, ServerConnection
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.framing import FrameDecoder, encode_frame
from chat.shared.messages import (
    Auth,
    AuthOk,
    ClientBye,
    Ping,
    Pong,
    Roster,
    RosterAck,
    Send,
    encode,
)
from chat.shared.states import State

from .strategies import relaxed, server_messages


class Server:
    """The server side as the server runs it: frames cut from bytes, fed to the connection."""

    def __init__(self, max_frame: int = 65536) -> None:
        self.decoder = FrameDecoder(max_frame)
        self.conn = ServerConnection()

    def feed(self, data: bytes, byte_by_byte: bool = False) -> list:
        """Feed bytes; the messages, or the RemoteProtocolError, of each whole frame."""
        out: list = []
        chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
        for chunk in chunks:
            self.decoder.feed(chunk)
            while (payload := self.decoder.next_frame()) is not None:
                try:
                    out.append(self.conn.receive(payload))
                except RemoteProtocolError as err:
                    out.append(err)
        return out


def pump_to_client(data: bytes, client: ClientConnection) -> list:
    client.receive_data(data)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def logged_in(online: tuple[str, ...] = ()) -> tuple[ClientConnection, Server]:
    """Run a whole login and first roster ack; both ends end in CHAT."""
    client, server = ClientConnection(), Server()
    [auth] = server.feed(client.send(Auth("alice", "pw", register=True)))
    assert auth == Auth("alice", "pw", True)
    ok = server.conn.login_succeeded(auth.user)
    events = pump_to_client(ok + encode(Roster(1, True, users=online)), client)
    assert events == [AuthOk("alice"), Roster(1, True, users=online)]
    assert client.state is State.ROSTER and server.conn.state is State.ROSTER
    [ack] = server.feed(client.send(RosterAck(1)))
    assert ack == RosterAck(1)
    assert server.conn.roster_acked() is True
    return client, server


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_login_moves_both_ends_from_auth_through_roster_to_chat(byte_by_byte: bool) -> None:
    client, server = ClientConnection(), Server()
    assert client.state is server.conn.state is State.AUTH
    [auth] = server.feed(client.send(Auth("alice", "pw")), byte_by_byte)
    ok = server.conn.login_succeeded(auth.user)
    assert server.conn.user == "alice"
    pump_to_client(ok + encode(Roster(1, True, users=("bob",))), client)
    assert client.user == "alice" and client.roster.online == {"bob"}
    [ack] = server.feed(client.send(RosterAck(1)), byte_by_byte)
    assert client.state is State.CHAT and ack == RosterAck(1)
    assert server.conn.roster_acked() is True
    assert server.conn.state is State.CHAT
    assert server.conn.roster_acked() is False  # later acks change nothing


def test_send_before_the_roster_ack_is_not_ready_with_the_id() -> None:
    client, server = ClientConnection(), Server()
    server.feed(client.send(Auth("alice", "pw")))
    server.conn.login_succeeded("alice")
    [err] = server.feed(encode(Send("m7", "*", "hi")))
    assert err.code is Code.NOT_READY and err.msg_id == "m7"
    assert server.conn.state is State.ROSTER


def test_send_before_login_is_not_authenticated_with_the_id() -> None:
    server = Server()
    err, ping = server.feed(encode(Send(5, ["bob"], "hi")) + encode(Ping()))
    assert err.code is Code.NOT_AUTHENTICATED and err.msg_id == 5
    assert ping == Ping()  # the connection survives
    assert server.conn.error(err)[4:] == (
        b'{"type":"error","code":"not_authenticated","message":"log in first","id":5}'
    )
    assert not server.conn.closed


def test_auth_after_login_is_bad_request() -> None:
    _, server = logged_in()
    [err] = server.feed(encode(Auth("alice", "pw")))
    assert err.code is Code.BAD_REQUEST and err.message == "already logged in"


def test_unknown_type_after_login_is_non_fatal_bad_request() -> None:
    _, server = logged_in()
    err, bye = server.feed(encode_frame(b'{"type":""}') + encode(ClientBye()))
    assert err.code is Code.BAD_REQUEST and not err.fatal
    assert bye == ClientBye()


def test_fifth_failed_login_is_too_many_attempts_and_closes() -> None:
    server = Server()
    for _ in range(MAX_FAILED_AUTHS - 1):
        server.feed(encode(Auth("alice", "wrong")))
        frame = server.conn.login_failed(RemoteProtocolError(Code.BAD_CREDENTIALS))
        assert b'"code":"bad_credentials"' in frame
    server.feed(encode(Auth("alice", "wrong")))
    frame = server.conn.login_failed(RemoteProtocolError(Code.BAD_CREDENTIALS))
    assert MAX_FAILED_AUTHS == 5
    assert b'"code":"too_many_attempts"' in frame and b"bad_credentials" not in frame
    assert server.conn.closed


def test_taken_names_do_not_count_as_failed_logins() -> None:
    server = Server()
    for _ in range(MAX_FAILED_AUTHS + 2):
        server.feed(encode(Auth("alice", "pw", register=True)))
        frame = server.conn.login_failed(RemoteProtocolError(Code.USER_EXISTS))
        assert b'"code":"user_exists"' in frame
    assert server.conn.state is State.AUTH


def test_no_frame_is_taken_while_a_login_is_being_checked() -> None:
    """The server holds frames back until the password is checked: feeding one is our bug."""
    server = Server()
    server.feed(encode(Auth("alice", "pw")))
    with pytest.raises(LocalProtocolError):
        server.feed(encode(Ping()))


def test_a_login_outcome_without_a_login_is_our_bug() -> None:
    _, server = logged_in()
    with pytest.raises(LocalProtocolError):
        server.conn.login_failed(RemoteProtocolError(Code.BAD_CREDENTIALS))
    with pytest.raises(LocalProtocolError):
        ServerConnection().login_succeeded("alice")


def test_the_peer_leaving_during_a_login_check_closes_without_a_local_error() -> None:
    """The race of issue 8: a wrong password, then a reset, before the hash is done."""
    server = Server()
    server.feed(encode(Auth("alice", "wrong")))
    server.conn.peer_gone()
    assert server.conn.closed
    with pytest.raises(LocalProtocolError):  # the server drops the outcome; it never feeds it
        server.conn.login_failed(RemoteProtocolError(Code.BAD_CREDENTIALS))


def test_a_fatal_error_or_a_bye_is_the_final_frame() -> None:
    _, server = logged_in()
    frame = server.conn.goodbye("bye")
    assert frame[4:] == b'{"type":"bye","reason":"bye"}' and server.conn.closed
    with pytest.raises(LocalProtocolError):
        server.conn.reply(Pong())
    _, other = logged_in()
    other.conn.error(RemoteProtocolError(Code.TIMEOUT, "idle for too long"))
    assert other.conn.closed


def test_server_refuses_a_frame_over_its_max_from_the_header() -> None:
    server = Server(max_frame=100)
    with pytest.raises(RemoteProtocolError) as info:
        server.feed((101).to_bytes(4, "big"))
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
    server.conn.peer_gone()
    assert server.conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.feed(encode(Ping()))


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
