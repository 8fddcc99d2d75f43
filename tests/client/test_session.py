"""The client's protocol driving (login, roster acks, send tracking), bytes in and out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.client import events as ev
from chat.client.session import Session, check_outgoing
from chat.shared.errors import RemoteProtocolError
from chat.shared.framing import FrameDecoder
from chat.shared.messages import (
    AuthOk,
    Error,
    Msg,
    Roster,
    Sent,
    ServerBye,
    encode,
    parse_client_message,
    parse_client_object,
)
from chat.shared.states import State


def frames(data: bytes) -> list:
    """The client messages in a byte string the session wrote."""
    decoder = FrameDecoder()
    decoder.feed(data)
    out = []
    while (payload := decoder.next_frame()) is not None:
        out.append(parse_client_message(payload))
    return out


def wire(*messages) -> bytes:
    return b"".join(encode(m) for m in messages)


def logged_in(session: Session, online: tuple[str, ...] = ("bob",)) -> list[ev.NetEvent]:
    session.start()
    _, events = session.receive(wire(AuthOk(session.user), Roster(1, True, users=online)))
    return events


def test_first_auth_registers_and_reconnect_only_logs_in() -> None:
    s = Session("alice", "pw", register=True)
    (auth,) = frames(s.start())
    assert (auth.type, auth.user, auth.password, auth.register) == ("auth", "alice", "pw", True)
    s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    s.connection_lost()
    (again,) = frames(s.start())
    assert again.register is False


def test_full_roster_is_acked_at_once_and_reported_as_login() -> None:
    s = Session("alice", "pw")
    s.start()
    out, events = s.receive(wire(AuthOk("alice"), Roster(1, True, users=("carol", "bob"))))
    assert [(f.type, getattr(f, "seq", None)) for f in frames(out)] == [
        ("roster_ack", 1),
        ("ping", None),  # its pong marks the end of the offline messages (CaughtUp)
    ]
    assert events == [ev.LoggedIn("alice", ("bob", "carol"), False)]
    assert s.state is State.CHAT


def test_each_delta_is_acked_with_its_seq_and_reported() -> None:
    s = Session("alice", "pw")
    logged_in(s, ("bob",))
    out, events = s.receive(wire(Roster(2, False, join=("carol",), leave=("bob",))))
    assert [(f.type, f.seq) for f in frames(out)] == [("roster_ack", 2)]
    assert events == [ev.RosterChanged(("carol",), ("bob",), ("carol",))]


def test_a_roster_seq_gap_is_a_protocol_error() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    with pytest.raises(RemoteProtocolError):
        s.receive(wire(Roster(3, False, join=("x",))))


def test_frames_split_byte_by_byte_give_the_same_events() -> None:
    s = Session("alice", "pw")
    s.start()
    data = wire(AuthOk("alice"), Roster(1, True, users=("bob",)))
    out, events = b"", []
    for i in range(len(data)):
        more, evs = s.receive(data[i : i + 1])
        out, events = out + more, events + evs
    assert events == [ev.LoggedIn("alice", ("bob",), False)]
    assert [f.type for f in frames(out)] == ["roster_ack", "ping"]


def test_messages_typed_before_login_wait_and_follow_the_roster_ack_in_order() -> None:
    s = Session("alice", "pw")
    s.start()
    assert s.send(1, "*", "first") == b""
    assert s.send(2, ("bob",), "second") == b""
    out, _ = s.receive(wire(AuthOk("alice"), Roster(1, True, users=("bob",))))
    sent = frames(out)
    assert [f.type for f in sent] == ["roster_ack", "ping", "send", "send"]
    assert [(f.id, f.to, f.text) for f in sent[2:]] == [(1, "*", "first"), (2, ("bob",), "second")]
    assert s.unanswered == 2


def test_sent_and_errors_are_paired_with_the_message_they_answer() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    s.send(7, "*", "hi")
    s.send(8, ("bob",), "hey")
    _, events = s.receive(wire(Sent(7, ("bob",), ()), Error("rate_limited", "slow down", 8)))
    assert events == [ev.Delivered(7, ("bob",), ()), ev.SendRefused(8, "rate_limited", "slow down")]
    assert s.unanswered == 0


def test_incoming_message_and_server_bye_become_events() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    msg = Msg(3, "bob", ("alice",), "привет", 1.5)
    _, events = s.receive(wire(msg, ServerBye("shutdown")))
    assert events == [ev.Incoming(msg), ev.ServerBye("shutdown")]
    assert s.server_bye == "shutdown"


def test_the_answer_to_our_own_bye_is_no_event() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    s.bye()
    _, events = s.receive(wire(ServerBye("bye")))
    assert events == [] and s.server_bye is None


def test_register_for_an_existing_account_logs_in_on_the_same_connection_when_asked() -> None:
    s = Session("alice", "pw", register=True, login_if_exists=True)
    s.start()
    out, events = s.receive(wire(Error("user_exists", "user name is taken")))
    assert events == [ev.AccountExists("alice")]
    (auth,) = frames(out)
    assert (auth.type, auth.user, auth.password, auth.register) == ("auth", "alice", "pw", False)
    assert not s.login_failed
    _, events = s.receive(wire(Error("bad_credentials", "no")))
    assert events == [ev.LoginFailed("bad_credentials", "no", False)] and s.login_failed


def test_register_for_an_existing_account_fails_when_not_asked_to_log_in() -> None:
    s = Session("alice", "pw", register=True)
    s.start()
    out, events = s.receive(wire(Error("user_exists", "user name is taken")))
    assert out == b"" and events == [ev.LoginFailed("user_exists", "user name is taken", True)]


@pytest.mark.parametrize("code", ["bad_credentials", "user_exists", "too_many_attempts"])
def test_a_refused_auth_is_a_login_failure(code: str) -> None:
    s = Session("alice", "pw")
    s.start()
    _, events = s.receive(wire(Error(code, "no")))
    assert events == [ev.LoginFailed(code, "no")]
    assert s.login_failed and not s.ever_logged_in


def test_server_full_is_not_a_login_failure() -> None:
    s = Session("alice", "pw")
    s.start()
    _, events = s.receive(wire(Error("server_full", "full")))
    assert events == [ev.ServerNotice("server_full", "full")]
    assert not s.login_failed


def test_lost_connection_reports_messages_without_an_answer() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    s.send(1, "*", "a")
    s.send(2, "*", "b")
    s.receive(wire(Sent(1, (), ())))
    assert s.connection_lost() == [ev.SendUnconfirmed((2,))]
    assert s.state is State.CLOSED and s.unanswered == 0


def test_bye_is_the_last_frame() -> None:
    s = Session("alice", "pw")
    logged_in(s)
    assert [f.type for f in frames(s.bye())] == ["bye"]
    assert s.bye_sent


@pytest.mark.parametrize(
    ("to", "text", "problem"),
    [
        ("*", "", "empty"),
        ("*", "x" * 4097, "too long"),
        ((), "x", "no recipients"),
        (("bad name",), "x", "not a valid user name"),
    ],
)
def test_messages_the_server_would_refuse_are_caught_before_queueing(to, text, problem) -> None:
    assert problem in (check_outgoing(to, text) or "")
    with pytest.raises(ValueError, match=problem):
        Session("a", "p").send(1, to, text)


names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True),
    st.text(max_size=40),
)
recipients = st.one_of(st.just("*"), st.lists(names, max_size=3).map(tuple))
texts = st.one_of(st.text(max_size=5), st.text(min_size=4090, max_size=4100))


@given(recipients, texts)
def test_the_verdict_is_the_shared_validators(to, text) -> None:
    """check_outgoing refuses exactly what the server's own parser refuses."""
    frame = {"type": "send", "id": 1, "to": to if to == "*" else list(to), "text": text}
    try:
        parse_client_object(frame)
        accepted = True
    except RemoteProtocolError:
        accepted = False
    problem = check_outgoing(to, text)
    assert (problem is None) == accepted, (to, text, problem)
    assert problem is None or problem.strip()


def test_limits_count_code_points_not_bytes() -> None:
    assert check_outgoing("*", "я" * 4096) is None
    assert check_outgoing(("bob", "carol"), "hi") is None


def test_a_fatal_error_is_remembered_as_the_reason_for_the_close() -> None:
    s = Session("alice", "pw")
    s.start()
    s.receive(wire(Error("server_full", "server is full")))
    assert s.fatal_error == "server is full (server_full)"
    s.connection_lost()
    s.start()
    assert s.fatal_error is None
