"""The session's side of protocol v1.1 sections 3-4 (queued, offline, history), bytes in and out."""

from __future__ import annotations

import pytest

from chat.client import events as ev
from chat.client.session import Session, check_history
from chat.shared.messages import (
    AuthOk,
    Error,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Pong,
    Roster,
    Sent,
    encode,
)
from chat.shared.states import State

from .test_session import frames, logged_in, wire


def chat(session: Session) -> Session:
    logged_in(session)
    return session


def offline(msg_id: int, text: str = "psst") -> Msg:
    return Msg(msg_id, "bob", ("alice",), text, 100.0 + msg_id, offline=True)


def test_sent_passes_the_queued_names_through_and_keeps_unknown_ones_missing() -> None:
    s = chat(Session("alice", "pw"))
    s.send(1, ("bob", "carol", "ghost"), "hi")
    _, events = s.receive(wire(Sent(1, ("carol",), ("bob", "ghost"), ("bob",))))
    assert events == [ev.Delivered(1, ("carol",), ("bob", "ghost"), ("bob",))]
    assert events[0].unknown == ("ghost",)


def test_a_v1_sent_without_queued_is_nobody_queued() -> None:
    s = chat(Session("alice", "pw"))
    s.send(1, ("bob",), "hi")
    raw = b'{"type":"sent","id":1,"delivered":[],"missing":["bob"]}'
    _, events = s.receive(len(raw).to_bytes(4, "big") + raw)
    assert events == [ev.Delivered(1, (), ("bob",), ())]


def test_offline_messages_are_events_marked_offline_then_caught_up_after_the_sync_pong() -> None:
    s = Session("alice", "pw")
    s.start()
    out, _ = s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    assert [f.type for f in frames(out)] == ["roster_ack", "ping"]
    live = Msg(9, "carol", "*", "live", 1.0)
    _, events = s.receive(wire(offline(3), offline(5), Pong(), live))
    assert events == [
        ev.Incoming(offline(3)),
        ev.Incoming(offline(5)),
        ev.CaughtUp(2),
        ev.Incoming(live),
    ]
    assert [e.offline for e in events if isinstance(e, ev.Incoming)] == [True, True, False]


def test_only_the_login_ping_reports_caught_up_not_keepalive_pongs() -> None:
    s = chat(Session("alice", "pw"))
    s.ping()  # a keep-alive written before the sync pong came back
    _, events = s.receive(wire(Pong()))
    assert events == [ev.CaughtUp(0)]
    _, events = s.receive(wire(Pong()))
    assert events == []


def test_offline_ack_is_capped_at_what_this_connection_delivered() -> None:
    s = chat(Session("alice", "pw"))
    assert s.offline_ack(5) == b""  # nothing offline arrived: nothing to acknowledge
    s.receive(wire(offline(3), offline(5)))
    assert frames(s.offline_ack(99)) == [OfflineAck(5)]
    assert s.offline_ack(4) == b""  # already covered
    s.receive(wire(offline(8)))
    assert frames(s.offline_ack(8)) == [OfflineAck(8)]


def test_offline_ack_outside_chat_is_dropped_not_queued() -> None:
    s = chat(Session("alice", "pw"))
    s.receive(wire(offline(3)))
    s.connection_lost()
    assert s.offline_ack(3) == b""
    s.start()
    assert s.offline_ack(3) == b""  # AUTH: not allowed, and this connection delivered nothing
    out, _ = s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    assert "offline_ack" not in [f.type for f in frames(out)]
    assert s.offline_ack(3) == b""  # not delivered again yet on this connection
    s.receive(wire(offline(3)))
    assert frames(s.offline_ack(3)) == [OfflineAck(3)]


def test_history_in_chat_is_written_and_its_answer_paired_by_id() -> None:
    s = chat(Session("alice", "pw"))
    out = s.history("h1", "*", None, 2)
    assert frames(out) == [HistoryRequest("h1", "*", None, 2)]
    assert b'"with":"*"' in out and b'"before"' not in out
    older = s.history("h2", "bob", 40, 200)
    assert frames(older) == [HistoryRequest("h2", "bob", 40, 200)]
    page = (Msg(41, "bob", ("alice",), "a", 1.0), Msg(42, "alice", ("bob",), "b", 2.0))
    _, events = s.receive(wire(HistoryPage("h2", (), False), HistoryPage("h1", page, True)))
    assert events == [
        ev.HistoryLoaded("h2", "bob", 40, (), False),
        ev.HistoryLoaded("h1", "*", None, page, True),
    ]


def test_an_error_with_a_history_id_fails_that_request_only() -> None:
    s = chat(Session("alice", "pw"))
    s.send(1, "*", "hi")
    s.history("h1", "bob")
    _, events = s.receive(wire(Error("bad_request", "nope", "h1"), Sent(1, (), ())))
    assert events == [
        ev.HistoryFailed("h1", "bob", None, "bad_request", "nope"),
        ev.Delivered(1, (), ()),
    ]


def test_an_answer_to_no_request_of_ours_is_dropped() -> None:
    s = chat(Session("alice", "pw"))
    _, events = s.receive(wire(HistoryPage("h9", (), False)))
    assert events == []


def test_history_asked_before_login_waits_for_chat_and_follows_the_sync_ping() -> None:
    s = Session("alice", "pw")
    s.start()
    assert s.history("h1", "*") == b""
    assert s.send(1, "*", "x") == b""
    out, _ = s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    assert [f.type for f in frames(out)] == ["roster_ack", "ping", "history", "send"]
    assert s.unanswered == 1  # history requests are not messages


def test_history_in_flight_when_the_connection_dies_is_reported_failed() -> None:
    s = chat(Session("alice", "pw"))
    s.history("h1", "*", 10)
    assert s.connection_lost() == [ev.HistoryFailed("h1", "*", 10, None, "connection lost")]
    s.start()
    s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    _, events = s.receive(wire(HistoryPage("h1", (), False)))
    assert events == []  # a late answer to a failed request is nobody's


def test_history_and_a_message_cannot_share_an_id() -> None:
    s = chat(Session("alice", "pw"))
    s.send(1, "*", "x")
    with pytest.raises(ValueError, match="already waiting"):
        s.history(1, "*")


@pytest.mark.parametrize(
    ("peer", "before", "limit", "problem"),
    [
        ("not a name", None, 50, "with"),
        ("bob", None, 0, "limit"),
        ("bob", None, 201, "limit"),
    ],
)
def test_history_the_server_would_refuse_is_caught_before_queueing(
    peer: str, before: int | None, limit: int, problem: str
) -> None:
    assert problem in (check_history(peer, before, limit) or "")
    with pytest.raises(ValueError, match=problem):
        Session("a", "p").history("h1", peer, before, limit)


def test_history_frames_split_byte_by_byte_give_the_same_event() -> None:
    s = chat(Session("alice", "pw"))
    s.history("h1", "*")
    page = HistoryPage("h1", (Msg(1, "bob", "*", "привет", 1.5),), False)
    data = encode(page)
    events: list[ev.NetEvent] = []
    for i in range(len(data)):
        events += s.receive(data[i : i + 1])[1]
    assert events == [ev.HistoryLoaded("h1", "*", None, page.messages, False)]
    assert s.state is State.CHAT
