"""Protocol v1.2 sections 4 and 5 from outside: one's own messages on every device (`echo`),
and typing notices (relayed to who may see them, rate-limited, never stored)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import assert_error, register
from e2e.v12_support import ALL, Frame, Session, closing, login, module_server, uniq, uniq_room


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(tmp_path_factory.mktemp("echo"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def msgs_in(s: Session) -> list[Frame]:
    return [f for f in s.drain() if f["type"] == "msg"]


# --- echo ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sender", [ALL, None], ids=["v12", "v11"])
@pytest.mark.parametrize("to", ["*", "person", "group", "group-naming-self"])
def test_a_message_reaches_the_senders_other_echo_sessions_as_the_same_msg(
    srv: ServerProc, to: str, sender: tuple[str, ...] | None
) -> None:
    """Whatever the sending session was granted (a v1.1 one too)."""
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    a1, a2 = login(srv, a, features=sender), login(srv, a, register=False)
    a_echo = login(srv, a, features=["echo"], register=False)
    a_no = login(srv, a, features=["rooms", "read", "typing"], register=False)
    a_old = login(srv, a, features=None, register=False)
    bob, carol = login(srv, b), login(srv, c, features=None)
    target: Any = {
        "*": "*",
        "person": [b],
        "group": [b, c],
        "group-naming-self": [b, a, c],
    }[to]
    a1.send({"type": "send", "id": "e", "to": target, "text": "mine everywhere"})
    sent = a1.answer("e")
    assert sent["type"] == "sent", sent
    assert a not in sent["delivered"] and a not in sent["missing"], sent
    (at_bob,) = msgs_in(bob)
    assert at_bob["id"] == sent["msg_id"] and at_bob["from"] == a and at_bob["to"] == target
    if to != "person":
        assert msgs_in(carol) == [at_bob]
    for s in (a2, a_echo):  # the same frame, once
        assert msgs_in(s) == [at_bob], s.features
    for s in (a1, a_no, a_old):  # v1 clarification 8 without echo; the sender: only its sent
        assert msgs_in(s) == [], s.features


def test_a_room_message_reaches_the_senders_other_rooms_sessions_once_echo_or_not(
    srv: ServerProc,
) -> None:
    a, b = uniq("a"), login(srv, uniq("b"))
    a1 = login(srv, a)
    both = login(srv, a, features=["rooms", "echo"], register=False)
    rooms_only = login(srv, a, features=["rooms"], register=False)
    echo_only = login(srv, a, features=["echo"], register=False)
    room = uniq_room()
    a1.ok({"type": "room_create", "room": room})
    b.ok({"type": "join", "room": room})
    sent = a1.ask({"type": "send", "to": room, "text": "to the room"})
    (at_b,) = msgs_in(b)
    assert at_b["id"] == sent["msg_id"]
    assert msgs_in(both) == [at_b] and msgs_in(rooms_only) == [at_b]
    assert msgs_in(echo_only) == [] and msgs_in(a1) == []


def test_an_echo_is_not_stored_twice(srv: ServerProc) -> None:
    a, b = uniq("a"), uniq("b")
    register(srv, b)
    a1, a2 = login(srv, a), login(srv, a, register=False)
    room = uniq_room()
    a1.ok({"type": "room_create", "room": room})
    queued = a1.ask({"type": "send", "to": [b], "text": "for b, away"})
    assert queued["queued"] == [b], queued
    in_room = a1.ask({"type": "send", "to": room, "text": "in the room"})
    assert [m["id"] for m in msgs_in(a2)] == [queued["msg_id"], in_room["msg_id"]]
    for peer, want in ((b, [queued["msg_id"]]), (room, [in_room["msg_id"]])):
        page = a2.ask({"type": "history", "with": peer})
        assert [m["id"] for m in page["messages"]] == want, page
    bob = login(srv, b, register=False)
    assert [(m["id"], m.get("offline")) for m in bob.inbox] == [(queued["msg_id"], True)]
    page = bob.ask({"type": "history", "with": a})
    assert [m["id"] for m in page["messages"]] == [queued["msg_id"]]


# --- typing --------------------------------------------------------------------------------------
def typing(to: Any, state: str = "active") -> Frame:
    return {"type": "typing", "to": to, "state": state}


def notices(s: Session) -> list[Frame]:
    return [f for f in s.drain() if f["type"] == "typing"]


def test_typing_to_a_user_name_reaches_that_users_typing_sessions(srv: ServerProc) -> None:
    a, b = uniq("a"), uniq("b")
    a1, a2 = login(srv, a), login(srv, a, features=["typing"], register=False)
    b1, b2 = login(srv, b), login(srv, b, features=["typing"], register=False)
    b_no = login(srv, b, features=["rooms", "read", "echo"], register=False)
    for state in ("active", "paused"):
        a1.send(typing(b, state))
        a1.sync()
        assert a1.drain() == []  # no answer (no error either)
        want = {"type": "typing", "from": a, "to": b, "state": state}
        assert notices(b1) == [want] and notices(b2) == [want]
    assert a2.drain() == [] and b_no.drain() == []


def test_typing_to_a_list_of_names_reaches_each_ones_typing_sessions_only(
    srv: ServerProc,
) -> None:
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    a1, a2 = login(srv, a), login(srv, a, features=["typing"], register=False)
    b1, c1 = login(srv, b), login(srv, c, features=["typing"])
    b_no, c_old = login(srv, b, features=["echo"], register=False), login(srv, c, None, False)
    a1.send(typing([b, c, a], "done"))
    a1.sync()
    want = {"type": "typing", "from": a, "to": [b, c, a], "state": "done"}
    assert notices(b1) == [want] and notices(c1) == [want]
    assert a1.drain() == [] and a2.drain() == []  # never the sender's own sessions
    assert b_no.drain() == [] and c_old.drain() == []


def test_typing_to_a_room_reaches_the_members_typing_sessions_but_the_senders(
    srv: ServerProc,
) -> None:
    a, b, c, d = uniq("a"), uniq("b"), uniq("c"), uniq("d")
    a1, a2 = login(srv, a), login(srv, a, register=False)
    b1, b2 = login(srv, b), login(srv, b, features=["typing"], register=False)
    b_rooms = login(srv, b, features=["rooms"], register=False)
    c1, outsider = login(srv, c), login(srv, d)
    room = uniq_room()
    a1.ok({"type": "room_create", "room": room})
    b1.ok({"type": "join", "room": room})
    c1.ok({"type": "join", "room": room})
    for s in (a1, a2, b1, b2, b_rooms, c1):
        s.drain()
    a1.send(typing(room))
    a1.sync()
    want = {"type": "typing", "from": a, "to": room, "state": "active"}
    for s in (b1, b2, c1):
        assert notices(s) == [want]
    assert a1.drain() == [] and a2.drain() == []
    assert b_rooms.drain() == [] and outsider.drain() == []


def test_at_most_two_typing_notices_a_second_per_sender_and_conversation(
    srv: ServerProc,
) -> None:
    a, b, c = login(srv, uniq("a")), login(srv, uniq("b")), login(srv, uniq("c"))
    a2 = login(srv, a.name, register=False)  # the same sender from another session
    first = time.monotonic()
    for _ in range(5):
        a.send(typing([b.name]))
        a.send(typing([c.name], "paused"))
    a.sync()
    assert len(notices(b)) == 2 and len(notices(c)) == 2
    a2.send(typing([b.name]))
    a2.sync()
    assert notices(b) == [] or time.monotonic() - first >= 1.0
    time.sleep(max(0.0, first + 1.1 - time.monotonic()))
    a.send(typing([b.name], "done"))
    a.sync()
    assert notices(b) == [{"type": "typing", "from": a.name, "to": [b.name], "state": "done"}]
    assert a.drain() == [] and a2.drain() == []


def test_typing_is_never_stored(srv: ServerProc) -> None:
    a, b, away = login(srv, uniq("a")), login(srv, uniq("b")), uniq("away")
    register(srv, away)
    a.ask({"type": "send", "to": [b.name], "text": "a real message"})
    before = a.ask({"type": "history", "id": "h", "with": b.name})
    a.send(typing([b.name]))
    a.send(typing([away]))
    a.sync()
    assert a.ask({"type": "history", "id": "h", "with": b.name}) == before
    assert a.ask({"type": "history", "id": "h", "with": away})["messages"] == []
    later = login(srv, away, register=False)
    assert [f["type"] for f in later.login_frames] == ["rooms", "markers"]
    assert later.drain() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"to": "x", "state": "typing"},
        {"to": "x", "state": "ACTIVE"},
        {"to": "x"},
        {"to": "x", "state": None},
        {"state": "active"},
        {"to": [], "state": "active"},
        {"to": 5, "state": "active"},
        {"to": "bad name", "state": "active"},
        {"to": ["ok", "bad name"], "state": "active"},
        {"to": "#", "state": "active"},
        {"to": "*", "state": "active"},
    ],
)
def test_a_bad_typing_frame_is_bad_request(srv: ServerProc, bad: Frame) -> None:
    a, b = login(srv, uniq("a")), login(srv, uniq("b"))
    obj = {"type": "typing"} | {k: (b.name if v == "x" else v) for k, v in bad.items()}
    a.send(obj)
    assert_error(a.take(lambda f: f["type"] == "error"), "bad_request")
    a.sync()
    assert a.inbox == [] and notices(b) == []
