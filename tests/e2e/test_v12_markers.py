"""Protocol v1.2 section 3 from outside: read markers, shared by a user's devices, and the
`markers` frame at login (conversations, unread counts, order, bounds), kept across a
restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import assert_error
from e2e.v12_support import (
    Frame,
    Session,
    closing,
    login,
    module_server,
    restart,
    uniq,
    uniq_room,
)

Start = Callable[..., ServerProc]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """No test here sends to "*": every user's markers hold only its own conversations."""
    yield from module_server(tmp_path_factory.mktemp("markers"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def markers_at_login(server: ServerProc, name: str) -> list[Frame]:
    s = login(server, name, register=False)
    return list(s.login_frame("markers")["markers"])


def entry(peer: str, upto: int, last: int, unread: int) -> Frame:
    return {"with": peer, "upto": upto, "last": last, "unread": unread}


def three_from(server: ServerProc, sender: Session, to: str) -> list[int]:
    return [sender.ask({"type": "send", "to": [to], "text": f"n{i}"})["msg_id"] for i in range(3)]


# --- read ----------------------------------------------------------------------------------------
def test_read_is_not_answered_and_reaches_the_users_other_read_sessions_at_once(
    srv: ServerProc,
) -> None:
    u, p = uniq("u"), login(srv, uniq("p"))
    u1 = login(srv, u)
    u2 = login(srv, u, register=False)
    u_read = login(srv, u, features=["read"], register=False)
    u_others = login(srv, u, features=["rooms", "echo", "typing"], register=False)
    u_old = login(srv, u, features=None, register=False)
    ids = three_from(srv, p, u)
    for s in (u1, u2, u_read, u_others, u_old):
        assert [m["id"] for m in s.msgs(3)] == ids
    started = time.monotonic()
    u1.send({"type": "read", "with": p.name, "upto": ids[1]})
    for s in (u2, u_read):
        got = s.take(lambda f: f["type"] == "read", timeout=1.0)
        assert got == {"type": "read", "with": p.name, "upto": ids[1]}
    assert time.monotonic() - started < 1.0
    assert u1.drain() == []  # no answer, and not told its own marker
    assert u_others.drain() == [] and u_old.drain() == []
    assert u2.drain() == [] and u_read.drain() == []


def test_a_marker_never_goes_back(srv: ServerProc) -> None:
    u, p = uniq("u"), login(srv, uniq("p"))
    u1, u2 = login(srv, u), login(srv, u, register=False)
    ids = three_from(srv, p, u)
    u1.send({"type": "read", "with": p.name, "upto": ids[1]})
    u2.take(lambda f: f["type"] == "read")
    for lower in (ids[0], ids[1]):
        u1.send({"type": "read", "with": p.name, "upto": lower})
    u1.sync()
    assert [f for f in u2.drain() if f["type"] == "read"] == []
    u1.send({"type": "read", "with": p.name, "upto": ids[2]})
    assert u2.take(lambda f: f["type"] == "read")["upto"] == ids[2]
    for s in (u1, u2, p):
        s.close()
    time_left = time.monotonic() + 5
    while markers_at_login(srv, u) != [entry(p.name, ids[2], ids[2], 0)]:
        assert time.monotonic() < time_left, markers_at_login(srv, u)
        time.sleep(0.05)


def test_a_login_right_after_a_read_shows_the_new_marker(srv: ServerProc) -> None:
    u, p = uniq("u"), login(srv, uniq("p"))
    u1 = login(srv, u)
    ids = three_from(srv, p, u)
    u1.send({"type": "read", "with": p.name, "upto": ids[1]})
    u1.sync()
    assert markers_at_login(srv, u) == [entry(p.name, ids[1], ids[2], 1)]


def test_a_bad_read_is_bad_request_and_a_room_read_is_for_its_members(srv: ServerProc) -> None:
    u, owner = login(srv, uniq("u")), login(srv, uniq("o"))
    pub, priv = uniq_room("pub"), uniq_room("priv")
    owner.ok({"type": "room_create", "room": pub})
    owner.ok({"type": "room_create", "room": priv, "invite_only": True})
    for bad in (
        {"upto": 1},
        {"with": 5, "upto": 1},
        {"with": "bad name", "upto": 1},
        {"with": "#", "upto": 1},
        {"with": ["*"], "upto": 1},
        {"with": "*"},
        {"with": "*", "upto": "1"},
        {"with": "*", "upto": 1.5},
        {"with": "*", "upto": True},
        {"with": "*", "upto": None},
        {"with": "*", "upto": 2**80},
    ):
        u.send({"type": "read"} | bad)
        assert_error(u.take(lambda f: f["type"] == "error"), "bad_request")
    for room, code in ((pub, "not_member"), (priv, "no_such_room"), (uniq_room(), "no_such_room")):
        u.send({"type": "read", "with": room, "upto": 1})
        assert_error(u.take(lambda f: f["type"] == "error"), code)
    u.sync()
    assert u.inbox == []


# --- the markers frame ---------------------------------------------------------------------------
def test_markers_list_each_conversation_with_its_marker_newest_and_unread_newest_first(
    start_server: Start,
) -> None:
    """ "*", a room (messages from before one joined count), a person (private and group
    messages, both ways): `upto` 0 when unread, `unread` not counting one's own."""
    server = start_server()
    u, p, q, x = (login(server, n) for n in ("una", "pia", "quin", "xav"))
    room = "#mix"

    def send(s: Session, to: Any, text: str) -> int:
        return int(s.ask({"type": "send", "to": to, "text": text})["msg_id"])

    x1 = send(x, "*", "x1")
    u.ok({"type": "room_create", "room": room})
    p.ok({"type": "join", "room": room})
    send(p, room, "p1")
    send(p, ["una"], "pu1")
    send(u, "*", "u1")
    send(p, room, "p2")
    group = send(p, ["una", "quin"], "group")
    x2 = send(x, "*", "x2")
    up = send(u, ["pia"], "up")
    um = send(u, room, "um")
    u.send({"type": "read", "with": "*", "upto": x1})
    u.sync()
    for s in (u, p, q, x):
        s.close()
    want = {
        "una": [entry(room, 0, um, 2), entry("pia", 0, up, 2), entry("*", x1, x2, 1)],
        "pia": [
            entry(room, 0, um, 1),
            entry("una", 0, up, 1),
            entry("*", 0, x2, 3),
            entry("quin", 0, group, 0),
        ],
        "quin": [entry("*", 0, x2, 3), entry("pia", 0, group, 1)],
        "xav": [entry("*", 0, x2, 1)],
    }
    deadline = time.monotonic() + 5  # the marker may reach the store up to 1 s late
    while markers_at_login(server, "una") != want["una"] and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, markers in want.items():
        assert markers_at_login(server, name) == markers, name


def test_unread_counts_stop_at_1000_and_the_frame_lists_the_1000_newest(
    start_server: Start,
) -> None:
    server = many_rooms_server(start_server)
    rooms = [f"#room{i:04d}" for i in range(1001)]
    x, u = login(server, "xav"), login(server, "una", features=["rooms"], register=False)
    sents = x.pipeline([{"type": "send", "to": "*", "text": f"m{i}"} for i in range(1005)])
    assert {s["type"] for s in sents} == {"sent"}
    last = sents[-1]["msg_id"]
    assert markers_at_login(server, "una") == [entry("*", 0, last, 1000)]
    answers = u.pipeline(
        [{"type": "room_create", "room": r} for r in rooms[1:]]
        + [{"type": "send", "to": r, "text": "mine"} for r in rooms],
        timeout=60,
    )
    assert {a["type"] for a in answers} == {"ok", "sent"}, [a for a in answers if "code" in a]
    ids = {a["room"]: a["msg_id"] for a in answers if a["type"] == "sent"}
    markers = markers_at_login(server, "una")
    assert len(markers) == 1000
    assert markers == [entry(r, 0, ids[r], 0) for r in reversed(rooms[1:])]


def many_rooms_server(start_server: Start) -> ServerProc:
    """A server where "una" may be in 1100 rooms, and is in one, "#room0000" made before a
    restart (the limit holds on a server that starts with rooms as with none)."""
    options = ("--rate-limit", "0", "--max-rooms-per-user", "1100")
    server = start_server(*options)
    login(server, "una").ok({"type": "room_create", "room": "#room0000"})
    return restart(server, start_server, *options)


def test_a_marker_past_the_1000_newest_conversations_never_goes_back(
    start_server: Start,
) -> None:
    server = many_rooms_server(start_server)
    p = login(server, "pia")
    u = login(server, "una", register=False)
    ids = three_from(server, p, "una")
    u.send({"type": "read", "with": "pia", "upto": ids[2]})
    u.sync()
    rooms = [f"#room{i:04d}" for i in range(1, 1001)]
    answers = u.pipeline(
        [{"type": "room_create", "room": r} for r in rooms]
        + [{"type": "send", "to": r, "text": "mine"} for r in ["#room0000", *rooms]],
        timeout=60,
    )
    assert {a["type"] for a in answers} == {"ok", "sent"}
    u.close()
    u1, u2 = login(server, "una", register=False), login(server, "una", register=False)
    assert "pia" not in {m["with"] for m in u1.login_frame("markers")["markers"]}
    u1.send({"type": "read", "with": "pia", "upto": ids[0]})
    u1.sync()
    assert [f for f in u2.drain() if f["type"] == "read"] == []


def test_markers_survive_a_restart(start_server: Start) -> None:
    server = start_server()
    u, p, o = login(server, "una"), login(server, "pia"), login(server, "oto")
    ids = three_from(server, p, "una")
    o.ok({"type": "room_create", "room": "#kept"})
    u.ok({"type": "join", "room": "#kept"})
    in_room = [o.ask({"type": "send", "to": "#kept", "text": f"r{i}"})["msg_id"] for i in range(2)]
    u.send({"type": "read", "with": "pia", "upto": ids[1]})
    u.send({"type": "read", "with": "#kept", "upto": in_room[0]})
    u.sync()
    server = restart(server, start_server)
    assert markers_at_login(server, "una") == [
        entry("#kept", in_room[0], in_room[1], 1),
        entry("pia", ids[1], ids[2], 1),
    ]


def test_a_marker_with_a_lower_upto_after_a_restart_changes_nothing(start_server: Start) -> None:
    server = start_server()
    u, p = login(server, "una"), login(server, "pia")
    ids = three_from(server, p, "una")
    u.send({"type": "read", "with": "pia", "upto": ids[2]})
    u.sync()
    server = restart(server, start_server)
    u1, u2 = login(server, "una", register=False), login(server, "una", register=False)
    u1.send({"type": "read", "with": "pia", "upto": ids[0]})
    u1.sync()
    assert [f for f in u2.drain() if f["type"] == "read"] == []
    assert markers_at_login(server, "una") == [entry("pia", ids[2], ids[2], 0)]


@pytest.mark.parametrize("going", ["leave", "kick"])
def test_a_room_one_is_out_of_tells_nothing_of_its_later_messages(
    srv: ServerProc, going: str
) -> None:
    owner, u = login(srv, uniq("o")), login(srv, uniq("u"))
    room = uniq_room("sec")
    owner.ok({"type": "room_create", "room": room, "invite_only": True})
    owner.ok({"type": "invite", "room": room, "user": u.name})
    u.ok({"type": "join", "room": room})
    seen = owner.ask({"type": "send", "to": room, "text": "before"})["msg_id"]
    u.send({"type": "read", "with": room, "upto": seen})
    u.sync()
    if going == "leave":
        u.ok({"type": "leave", "room": room})
    else:
        owner.ok({"type": "kick", "room": room, "user": u.name})
    for i in range(3):
        owner.ask({"type": "send", "to": room, "text": f"after {i}"})
    entries = [m for m in markers_at_login(srv, u.name) if m["with"] == room]
    assert entries in ([], [entry(room, seen, seen, 0)]), entries


def test_a_v11_login_never_gets_markers(srv: ServerProc) -> None:
    u, p = uniq("u"), login(srv, uniq("p"))
    u1 = login(srv, u)
    ids = three_from(srv, p, u)
    u1.send({"type": "read", "with": p.name, "upto": ids[0]})
    u1.sync()
    for features in (None, [], ["rooms", "echo", "typing"]):
        s = login(srv, u, features=features, register=False)
        assert [f["type"] for f in s.login_frames if f["type"] != "rooms"] == [], s.login_frames
