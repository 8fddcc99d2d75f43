"""The session's side of protocol v1.2 sections 1-5 and `user_search`, bytes in and out:
features asked for and granted, requests paired with their answers by id, what a server
without a feature never receives, and every notice as an event."""

from __future__ import annotations

import pytest

from chat.client import events as ev
from chat.client.session import WANTED, Session
from chat.shared.messages import (
    AuthOk,
    Error,
    Invitation,
    Marker,
    Markers,
    Msg,
    Ok,
    ReadNotice,
    RoomEvent,
    RoomInfo,
    RoomJoin,
    RoomList,
    RoomListRequest,
    Rooms,
    RoomSent,
    RoomState,
    RoomTopic,
    Roster,
    Sent,
    TypingNotice,
    Users,
    UserSearch,
)
from chat.shared.states import State

from .test_session import frames, wire

ALL_FEATURES = ("rooms", "read", "echo", "typing")


def v12(session: Session, granted: tuple[str, ...] = ALL_FEATURES) -> list[ev.NetEvent]:
    """Log `session` in on a v1.2 server that grants `granted`."""
    session.start()
    _, events = session.receive(
        wire(AuthOk(session.user, features=granted), Roster(1, True, users=("bob",)))
    )
    return events


def test_the_auth_asks_for_the_features_and_the_login_reports_what_was_granted() -> None:
    s = Session("alice", "pw")
    (auth,) = frames(s.start())
    assert auth.features == WANTED == ("rooms", "read", "echo", "typing")
    _, events = s.receive(
        wire(AuthOk("alice", features=("rooms", "read")), Roster(1, True, users=()))
    )
    assert events == [ev.LoggedIn("alice", (), False, frozenset({"rooms", "read"}))]
    assert s.v12 and s.features == {"rooms", "read"}


def test_a_v11_server_grants_nothing_and_a_refused_registration_logs_in_with_the_features() -> None:
    s = Session("alice", "pw", register=True, login_if_exists=True)
    s.start()
    out, events = s.receive(wire(Error("user_exists", "taken")))
    (auth,) = frames(out)
    assert (auth.register, auth.features) == (False, WANTED)
    _, events = s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))
    assert events[-1] == ev.LoggedIn("alice", (), False, frozenset())
    assert not s.v12


def test_sent_carries_the_stored_message_id_and_a_room_sent_is_its_own_event() -> None:
    s = Session("alice", "pw")
    v12(s)
    s.send(1, ("bob",), "hi")
    s.send(2, "#dev", "hello room")
    _, events = s.receive(wire(Sent(1, ("bob",), (), (), 41), RoomSent(2, 42, "#dev")))
    assert events == [ev.Delivered(1, ("bob",), (), (), 41), ev.RoomDelivered(2, 42, "#dev")]
    assert s.unanswered == 0


def test_a_request_before_the_login_waits_then_is_paired_with_its_ok_and_its_error() -> None:
    s = Session("alice", "pw")
    s.start()
    assert s.request(RoomJoin("r1", "#dev")) == b""
    assert s.request(RoomTopic("r2", "#dev", "plans")) == b""
    out, _ = s.receive(wire(AuthOk("alice", features=ALL_FEATURES), Roster(1, True, users=())))
    assert [f.type for f in frames(out)] == ["roster_ack", "ping", "join", "topic"]
    _, events = s.receive(wire(Ok("r1"), Error("not_member", "not a member", "r2")))
    assert events == [
        ev.RequestDone("r1", "join", "#dev"),
        ev.RequestFailed("r2", "topic", "not_member", "not a member", "#dev"),
    ]


def test_room_list_and_user_search_answers_are_events_with_their_request() -> None:
    s = Session("alice", "pw")
    v12(s)
    s.request(RoomListRequest("r1"))
    s.request(UserSearch("r2", "bo"))
    info = RoomInfo("#dev", "plans", False, "bob", 2, False, True)
    _, events = s.receive(wire(RoomList("r1", (info,)), Users("r2", ("bob", "bonnie"), False)))
    assert events == [
        ev.RoomsListed("r1", (info,)),
        ev.UsersFound("r2", "bo", ("bob", "bonnie"), False),
    ]


def test_a_request_the_server_does_not_offer_never_reaches_the_wire() -> None:
    s = Session("alice", "pw")
    s.start()
    s.request(RoomJoin("r1", "#dev"))  # queued: fails at the login
    s.request(UserSearch("r2", "b"))
    s.send(3, "#dev", "to a room")
    out, events = s.receive(wire(AuthOk("alice"), Roster(1, True, users=())))  # v1.1
    assert [f.type for f in frames(out)] == ["roster_ack", "ping"]
    assert events[1:] == [
        ev.RequestFailed(
            "r1", "join", None, "the server does not offer rooms (protocol v1.2)", "#dev"
        ),
        ev.RequestFailed(
            "r2", "user_search", None, "the server does not offer user_search (protocol v1.2)"
        ),
        ev.SendRefused(3, "bad_request", "the server does not offer rooms (protocol v1.2)"),
    ]
    with pytest.raises(ValueError, match="does not offer rooms"):
        s.request(RoomJoin("r4", "#dev"))  # in CHAT: at once
    with pytest.raises(ValueError, match="does not offer rooms"):
        s.send(5, "#dev", "again")
    assert s.read("*", 10) == b"" and s.typing("bob", "active") == b""  # simply not sent


def test_read_and_typing_are_written_only_in_chat_with_their_feature() -> None:
    s = Session("alice", "pw")
    assert s.read("*", 3) == b""  # not in CHAT: nothing queued
    v12(s, ("read",))
    (read,) = frames(s.read("bob", 7))
    assert (read.type, read.peer, read.upto) == ("read", "bob", 7)
    assert s.read("#dev", 7) == b""  # a room's marker needs rooms too
    assert s.typing("bob", "active") == b""  # typing not granted


def test_every_v12_notice_is_an_event() -> None:
    s = Session("alice", "pw")
    v12(s)
    room = RoomState("#dev", "plans", False, "bob", ("alice", "bob"), 12)
    joined = RoomEvent("#dev", "joined", "carol", 5.0)
    _, events = s.receive(
        wire(
            Rooms((room,), (Invitation("#ops", "bob"),)),
            Markers((Marker("#dev", 10, 12, 2),)),
            joined,
            ReadNotice("#dev", 12),
            TypingNotice("bob", "#dev", "active"),
            Msg(13, "alice", ("bob",), "from my phone", 6.0),
        )
    )
    assert events == [
        ev.RoomsState((room,), (Invitation("#ops", "bob"),)),
        ev.MarkersLoaded((Marker("#dev", 10, 12, 2),)),
        ev.RoomNotice(joined),
        ev.ReadMoved("#dev", 12),
        ev.TypingSeen("bob", "#dev", "active"),
        ev.Incoming(Msg(13, "alice", ("bob",), "from my phone", 6.0)),  # an echo
    ]


def test_requests_in_flight_when_the_connection_dies_fail_without_a_code() -> None:
    s = Session("alice", "pw")
    v12(s)
    s.request(RoomJoin("r1", "#dev"))
    assert s.state is State.CHAT
    events = s.connection_lost()
    assert events == [ev.RequestFailed("r1", "join", None, "connection lost", "#dev")]


def test_an_id_in_use_by_a_request_is_refused_for_a_message() -> None:
    s = Session("alice", "pw")
    v12(s)
    s.request(RoomJoin(7, "#dev"))
    with pytest.raises(ValueError, match="already waiting"):
        s.send(7, "*", "hi")
