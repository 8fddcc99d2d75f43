"""Protocol v1.2 section 2 from outside: rooms on the real server, over real sockets.

Every request and its errors, every room event and who gets it, the `rooms` frame
at login, room messages and history, one order per room at every session, the
limits, and rooms kept across a restart and sealed at rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import PASSWORD, assert_error, register
from e2e.v12_support import (
    ALL,
    Frame,
    Session,
    check_event,
    closing,
    in_clear,
    login,
    module_server,
    of_room,
    restart,
    room_entry,
    room_key,
    uniq,
    uniq_room,
)
from wire import frame

Start = Callable[..., ServerProc]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(tmp_path_factory.mktemp("rooms"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def create(owner: Session, room: str, **fields: Any) -> None:
    owner.ok({"type": "room_create", "room": room} | fields)
    owner.event(room, "created")


def join(s: Session, room: str, *others: Session) -> None:
    """`s` joins; its own and the other members' sessions given have the `joined` event."""
    s.ok({"type": "join", "room": room})
    for x in (s, *others):
        check_event(x.event(room, "joined"), room, "joined", s.name)


# --- room_create ---------------------------------------------------------------------------------
def test_create_makes_the_creator_owner_and_first_member_and_tells_its_sessions(
    srv: ServerProc,
) -> None:
    a = uniq("a")
    one, two = login(srv, a), login(srv, a, register=False)
    room = uniq_room()
    one.ok({"type": "room_create", "room": room, "topic": "our topic", "invite_only": True})
    for s in (one, two):
        check_event(s.event(room, "created"), room, "created", a, topic="our topic")
    later = login(srv, a, register=False)
    state = {"room": room, "topic": "our topic", "invite_only": True, "owner": a}
    assert later.login_frame("rooms") == {
        "type": "rooms",
        "rooms": [state | {"members": [a], "last": 0}],
        "invites": [],
    }
    listing = one.ask({"type": "room_list"})
    assert listing["type"] == "room_list"
    assert room_entry(listing, room) == state | {"members": 1, "member": True, "invited": False}


def test_create_defaults_to_a_public_room_with_an_empty_topic(srv: ServerProc) -> None:
    a, stranger = login(srv, uniq("a")), login(srv, uniq("s"))
    room = uniq_room()
    a.ok({"type": "room_create", "room": room})
    check_event(a.event(room, "created"), room, "created", a.name, topic="")
    entry = room_entry(stranger.ask({"type": "room_list"}), room)
    assert entry == {
        "room": room,
        "topic": "",
        "invite_only": False,
        "owner": a.name,
        "members": 1,
        "member": False,
        "invited": False,
    }


def test_a_name_taken_ignoring_case_is_room_exists(srv: ServerProc) -> None:
    a, b = login(srv, uniq("a")), login(srv, uniq("b"))
    room = "#Case" + uniq("x")
    create(a, room)
    for name in (room, room.lower(), room.upper()):
        b.refused({"type": "room_create", "room": name}, "room_exists")
    listing = b.ask({"type": "room_list"})
    assert [e["room"] for e in listing["rooms"] if e["room"].lower() == room.lower()] == [room]
    assert b.drain() == [] and a.drain() == []


BAD_ROOMS = ["plain", "#", "#-x", "#_x", "#a b", "#" + "a" * 33, "##x", "#\u00e9", "", 7, None]


@pytest.mark.parametrize("kind", ["room_create", "join", "leave", "topic", "invite", "kick"])
def test_a_bad_room_name_is_bad_request_with_the_id(srv: ServerProc, kind: str) -> None:
    s = login(srv, uniq("a"))
    extra = {"topic": {"topic": "t"}, "invite": {"user": s.name}, "kick": {"user": s.name}}
    for name in BAD_ROOMS:
        s.refused({"type": kind, "room": name} | extra.get(kind, {}), "bad_request")
    for field in ("room", "id"):  # missing
        obj = {"type": kind, "id": "x", "room": uniq_room()} | extra.get(kind, {})
        del obj[field]
        s.send(obj)
        assert_error(s.take(lambda f: f["type"] == "error"), "bad_request")
    s.sync()


def test_ill_typed_fields_are_bad_request_with_the_id_and_change_nothing(
    srv: ServerProc,
) -> None:
    owner, other = login(srv, uniq("o")), login(srv, uniq("x"))
    room, fresh = uniq_room(), uniq_room()
    create(owner, room)
    for obj in (
        {"type": "room_create", "room": fresh, "invite_only": "yes"},
        {"type": "room_create", "room": fresh, "invite_only": None},
        {"type": "room_create", "room": fresh, "topic": 5},
        {"type": "room_create", "room": fresh, "topic": None},
        {"type": "topic", "room": room},
        {"type": "topic", "room": room, "topic": ["t"]},
        {"type": "invite", "room": room},
        {"type": "invite", "room": room, "user": 5},
        {"type": "invite", "room": room, "user": "#" + other.name},
        {"type": "kick", "room": room, "user": None},
    ):
        owner.refused(obj, "bad_request")
    for bad_id in (True, 1.5, None, [1], "x" * 129):
        owner.send({"type": "room_list", "id": bad_id})
        error = owner.take(lambda f: f["type"] == "error")
        assert_error(error, "bad_request")
        assert error.get("id") is None, error
    assert owner.drain() == [] and other.drain() == []
    create(other, fresh)  # not created by any of them
    entry = room_entry(other.ask({"type": "room_list"}), room)
    assert entry is not None and entry["topic"] == "" and entry["members"] == 1


def test_a_room_name_is_a_hash_and_a_user_name(srv: ServerProc) -> None:
    s = login(srv, uniq("a"))
    for room in ("#" + (uniq("L") + "x" * 32)[:32], "#" + uniq("9a.b_c-d"), "#" + uniq("Z")):
        create(s, room)


def test_one_name_one_room_whoever_asks_at_once(srv: ServerProc) -> None:
    people = [login(srv, uniq("r")) for _ in range(6)]
    base = "#Race" + uniq("x")
    names = [base, base.lower(), base.upper(), base, base.lower(), base.upper()]
    for s, name in zip(people, names, strict=True):
        s.send({"type": "room_create", "id": "race", "room": name})
    answers = [s.answer("race") for s in people]
    assert sorted(a["type"] for a in answers) == ["error"] * 5 + ["ok"], answers
    for a in answers:
        if a["type"] == "error":
            assert_error(a, "room_exists", "race")
    winner = people[[a["type"] for a in answers].index("ok")]
    entry = room_entry(people[0].ask({"type": "room_list"}), names[people.index(winner)])
    assert entry is not None and entry["owner"] == winner.name and entry["members"] == 1


# --- join ----------------------------------------------------------------------------------------
def test_joining_a_public_room_tells_every_member_and_the_joiners_sessions(
    srv: ServerProc,
) -> None:
    owner = login(srv, uniq("o"))
    b = uniq("b")
    b1, b2 = login(srv, b), login(srv, b, register=False)
    room = uniq_room()
    create(owner, room)
    join(b1, room, owner, b2)
    assert room_entry(owner.ask({"type": "room_list"}), room)["members"] == 2  # type: ignore[index]
    for s in (owner, b1, b2):
        assert s.drain() == []


def test_joining_a_room_one_is_in_already_is_ok_and_tells_nobody(srv: ServerProc) -> None:
    owner, b = login(srv, uniq("o")), login(srv, uniq("b"))
    room = uniq_room()
    create(owner, room)
    join(b, room, owner)
    owner.ok({"type": "join", "room": room})
    b.ok({"type": "join", "room": room})
    assert owner.drain() == [] and b.drain() == []
    assert room_entry(b.ask({"type": "room_list"}), room)["members"] == 2  # type: ignore[index]


def test_an_invite_only_room_without_an_invite_is_no_such_room_as_if_absent(
    srv: ServerProc,
) -> None:
    owner, b = login(srv, uniq("o")), login(srv, uniq("b"))
    room, absent = uniq_room("inv"), uniq_room("absent")
    create(owner, room, invite_only=True)
    for target in (room, absent):
        requests = [
            {"type": "join", "room": target},
            {"type": "leave", "room": target},
            {"type": "topic", "room": target, "topic": "t"},
            {"type": "invite", "room": target, "user": b.name},
            {"type": "kick", "room": target, "user": owner.name},
            {"type": "send", "to": target, "text": "hi"},
            {"type": "history", "with": target},
        ]
        answers = [b.refused(r, "no_such_room") for r in requests]
        words = [a["message"].replace(target, "ROOM") for a in answers]
        if target == room:
            in_room = words
        else:
            assert words == in_room  # the same words: nothing told
    assert owner.drain() == []
    assert room_entry(b.ask({"type": "room_list"}), room) is None


def test_an_invite_lets_one_join_an_invite_only_room_once(srv: ServerProc) -> None:
    owner, b = login(srv, uniq("o")), login(srv, uniq("b"))
    room = uniq_room("inv")
    create(owner, room, invite_only=True)
    owner.ok({"type": "invite", "room": room, "user": b.name})
    owner.event(room, "invited")
    b.event(room, "invited")
    join(b, room, owner)
    later = login(srv, b.name, register=False)
    rooms = later.login_frame("rooms")
    assert rooms["invites"] == [] and [r["room"] for r in rooms["rooms"]] == [room]
    assert room_entry(b.ask({"type": "room_list"}), room) == {
        "room": room,
        "topic": "",
        "invite_only": True,
        "owner": owner.name,
        "members": 2,
        "member": True,
        "invited": False,
    }
    # used: after leaving, the room is closed to b again
    b.ok({"type": "leave", "room": room})
    b.refused({"type": "join", "room": room}, "no_such_room")


# --- leave ---------------------------------------------------------------------------------------
def test_when_the_owner_leaves_the_earliest_joined_of_those_left_becomes_owner(
    srv: ServerProc,
) -> None:
    owner = login(srv, uniq("m"))
    first, second = login(srv, uniq("zz")), login(srv, uniq("bb"))  # joined first, sorts last
    room = uniq_room()
    create(owner, room)
    join(first, room, owner)
    join(second, room, owner, first)
    owner.ok({"type": "leave", "room": room})
    check_event(owner.event(room, "left"), room, "left", owner.name)
    for s in (first, second):
        frames = of_room(s.drain(), room)
        assert [(f["event"], f["user"]) for f in frames] == [
            ("left", owner.name),
            ("owner", first.name),
        ]
        check_event(frames[1], room, "owner", first.name)
    assert owner.drain() == []  # the leaver hears its `left`, not who owns it now
    entry = room_entry(second.ask({"type": "room_list"}), room)
    assert entry is not None and entry["owner"] == first.name and entry["members"] == 2
    second.ok({"type": "leave", "room": room})  # not the owner: no `owner` event
    assert [(f["event"], f["user"]) for f in of_room(first.drain(), room)] == [
        ("left", second.name)
    ]
    later = login(srv, first.name, register=False)
    assert later.login_frame("rooms")["rooms"] == [
        {
            "room": room,
            "topic": "",
            "invite_only": False,
            "owner": first.name,
            "members": [first.name],
            "last": 0,
        }
    ]


def test_the_last_member_leaving_deletes_the_room_its_history_and_invites(
    srv: ServerProc,
) -> None:
    a = uniq("a")
    a1, a2 = login(srv, a), login(srv, a, register=False)
    invitee = login(srv, uniq("inv"))
    room = uniq_room()
    create(a1, room, invite_only=True, topic="old")
    a1.ok({"type": "invite", "room": room, "user": invitee.name})
    for text in ("old one", "old two"):
        assert a1.ask({"type": "send", "to": room, "text": text})["type"] == "sent"
    a1.ok({"type": "leave", "room": room})
    for s in (a1, a2):
        frames = [f for f in s.drain() if f["type"] == "room_event" and f["event"] != "invited"]
        frames = [f for f in frames if f["event"] != "created"]
        assert [f["event"] for f in frames] == ["left", "deleted"], frames
        check_event(frames[0], room, "left", a)
        check_event(frames[1], room, "deleted", a)
    # its invites are gone
    invitee.refused({"type": "join", "room": room}, "no_such_room")
    assert room_entry(invitee.ask({"type": "room_list"}), room) is None
    assert login(srv, invitee.name, register=False).login_frame("rooms")["invites"] == []
    # the name is free again, for a new room with no history
    c = login(srv, uniq("c"))
    create(c, room)
    page = c.ask({"type": "history", "with": room})
    assert page == {"type": "history", "id": page["id"], "messages": [], "more": False}
    join(invitee, room, c)
    assert invitee.ask({"type": "history", "with": room})["messages"] == []
    assert login(srv, c.name, register=False).login_frame("rooms")["rooms"][0]["last"] == 0
    a1.refused({"type": "leave", "room": room}, "not_member")


# --- invite --------------------------------------------------------------------------------------
def test_any_member_may_invite_and_members_and_the_invitee_are_told(srv: ServerProc) -> None:
    owner, member = login(srv, uniq("o")), login(srv, uniq("m"))
    c = uniq("c")
    c1, c2 = login(srv, c), login(srv, c, register=False)
    c_old = login(srv, c, features=["read", "echo", "typing"], register=False)
    room = uniq_room("inv")
    create(owner, room, invite_only=True)
    owner.ok({"type": "invite", "room": room, "user": member.name})
    join(member, room, owner)
    member.ok({"type": "invite", "room": room, "user": c})  # not the owner: fine
    for s in (owner, member, c1, c2):
        frames = [f for f in of_room(s.drain(), room) if f["user"] == c]
        assert len(frames) == 1, frames
        check_event(frames[0], room, "invited", c, by=member.name)
    assert c_old.drain() == []
    later = login(srv, c, register=False)
    assert later.login_frame("rooms") == {
        "type": "rooms",
        "rooms": [],
        "invites": [{"room": room, "by": member.name}],
    }
    entry = room_entry(c1.ask({"type": "room_list"}), room)
    assert entry is not None and (entry["member"], entry["invited"]) == (False, True)
    # kept until used: another session, later, still sees it and may join
    join(c2, room, owner, member, c1)


def test_invite_errors_no_such_user_not_member_no_such_room(srv: ServerProc) -> None:
    owner, outsider, target = login(srv, uniq("o")), login(srv, uniq("x")), login(srv, uniq("t"))
    pub, priv = uniq_room("pub"), uniq_room("priv")
    create(owner, pub)
    create(owner, priv, invite_only=True)
    owner.refused({"type": "invite", "room": pub, "user": uniq("ghost")}, "no_such_user")
    outsider.refused({"type": "invite", "room": pub, "user": target.name}, "not_member")
    outsider.refused({"type": "invite", "room": priv, "user": target.name}, "no_such_room")
    owner.refused(
        {"type": "invite", "room": uniq_room("none"), "user": target.name}, "no_such_room"
    )
    owner.refused({"type": "invite", "room": pub, "user": "bad name"}, "bad_request")
    assert target.drain() == [] and owner.drain() == []
    assert login(srv, target.name, register=False).login_frame("rooms")["invites"] == []


# --- kick ----------------------------------------------------------------------------------------
def test_only_the_owner_kicks_and_the_kicked_hears_it_and_nothing_after(srv: ServerProc) -> None:
    owner, member = login(srv, uniq("o")), login(srv, uniq("m"))
    k = uniq("k")
    k1, k2 = login(srv, k), login(srv, k, register=False)
    room = uniq_room()
    create(owner, room)
    join(member, room, owner)
    join(k1, room, owner, member, k2)
    member.refused({"type": "kick", "room": room, "user": k}, "not_allowed")
    owner.refused({"type": "kick", "room": room, "user": owner.name}, "bad_request")
    assert k1.drain() == [] and k2.drain() == []
    owner.ok({"type": "kick", "room": room, "user": k})
    for s in (owner, member, k1, k2):
        frames = of_room(s.drain(), room)
        assert len(frames) == 1, frames
        check_event(frames[0], room, "kicked", k, by=owner.name)
    sent = owner.ask({"type": "send", "to": room, "text": "after the kick"})
    assert [m["id"] for m in member.msgs(1)] == [sent["msg_id"]]
    assert k1.drain() == [] and k2.drain() == []
    k1.refused({"type": "send", "to": room, "text": "let me in"}, "not_member")
    k1.refused({"type": "history", "with": room}, "not_member")
    assert login(srv, k, register=False).login_frame("rooms")["rooms"] == []
    assert member.drain() == []


# --- topic ---------------------------------------------------------------------------------------
def test_any_member_sets_the_topic_and_every_member_is_told(srv: ServerProc) -> None:
    owner, member, outsider = login(srv, uniq("o")), login(srv, uniq("m")), login(srv, uniq("x"))
    room = uniq_room()
    create(owner, room, topic="first")
    join(member, room, owner)
    member.ok({"type": "topic", "room": room, "topic": "second"})
    for s in (owner, member):
        (ev,) = of_room(s.drain(), room)
        check_event(ev, room, "topic", member.name, by=member.name, topic="second")
    outsider.refused({"type": "topic", "room": room, "topic": "mine"}, "not_member")
    outsider.refused({"type": "topic", "room": uniq_room("none"), "topic": "x"}, "no_such_room")
    owner.ok({"type": "topic", "room": room, "topic": ""})  # 0 code points is a topic too
    assert of_room(member.drain(), room)[0]["topic"] == ""
    entry = room_entry(outsider.ask({"type": "room_list"}), room)
    assert entry is not None and entry["topic"] == ""
    assert outsider.drain() == []


def test_a_topic_counts_code_points_up_to_300(srv: ServerProc) -> None:
    owner = login(srv, uniq("o"))
    longest, too_long = "\U0001f600" * 300, "\U0001f600" * 299 + "ab"
    room, other = uniq_room(), uniq_room()
    create(owner, room, topic=longest)
    owner.refused({"type": "room_create", "room": other, "topic": too_long}, "bad_request")
    owner.refused({"type": "topic", "room": room, "topic": too_long}, "bad_request")
    owner.refused({"type": "topic", "room": room, "topic": 5}, "bad_request")
    owner.ok({"type": "topic", "room": room, "topic": longest[:-1] + "a"})
    assert of_room(owner.drain(), room)[0]["topic"] == longest[:-1] + "a"
    assert room_entry(owner.ask({"type": "room_list"}), other) is None


# --- room_list -----------------------------------------------------------------------------------
def test_room_list_shows_public_rooms_and_the_users_own_and_invited_sorted(
    srv: ServerProc,
) -> None:
    owner, s = login(srv, uniq("o")), login(srv, uniq("s"))
    base = uniq_room("rl")
    rooms = {  # created out of order
        "c": {"invite_only": False},  # public, s not in it
        "a": {"invite_only": True},  # s invited
        "e": {"invite_only": False},  # public, s a member
        "b": {"invite_only": True},  # s a member
        "d": {"invite_only": True},  # s not invited: not listed
    }
    for suffix, fields in rooms.items():
        create(owner, base + suffix, topic="t" + suffix, **fields)
    owner.ok({"type": "invite", "room": base + "a", "user": s.name})
    owner.ok({"type": "invite", "room": base + "b", "user": s.name})
    s.ok({"type": "join", "room": base + "b"})
    s.ok({"type": "join", "room": base + "e"})
    listing = s.ask({"type": "room_list"})
    assert set(listing) == {"type", "id", "rooms"}
    mine = [e for e in listing["rooms"] if e["room"].startswith(base)]

    def entry(suffix: str, members: int, member: bool, invited: bool) -> Frame:
        return {
            "room": base + suffix,
            "topic": "t" + suffix,
            "invite_only": rooms[suffix]["invite_only"],
            "owner": owner.name,
            "members": members,
            "member": member,
            "invited": invited,
        }

    assert mine == [
        entry("a", 1, False, True),
        entry("b", 2, True, False),
        entry("c", 1, False, False),
        entry("e", 2, True, False),
    ]
    for e in listing["rooms"]:  # no other test's invite-only room either
        assert not e["invite_only"] or e["member"] or e["invited"], e
    names = [e["room"] for e in listing["rooms"]]
    assert names in (sorted(names), sorted(names, key=str.lower))


# --- the rooms frame at login --------------------------------------------------------------------
def test_the_rooms_frame_comes_right_after_the_first_roster_ack_with_the_users_rooms(
    srv: ServerProc,
) -> None:
    owner, zed, amy = login(srv, uniq("o")), login(srv, uniq("zed")), login(srv, uniq("amy"))
    quiet, invited = uniq_room("quiet"), uniq_room("inv")
    busy = uniq_room("busy")
    create(owner, busy, topic="busy one")
    create(owner, quiet)
    create(owner, invited, invite_only=True)
    join(zed, busy)
    join(amy, busy)
    amy.ok({"type": "join", "room": quiet})
    owner.ask({"type": "send", "to": busy, "text": "one"})
    last = zed.ask({"type": "send", "to": busy, "text": "two"})["msg_id"]
    owner.ok({"type": "invite", "room": invited, "user": amy.name})
    amy.send({"type": "bye"})
    amy.c.expect_closed()
    away = owner.ask({"type": "send", "to": [amy.name], "text": "while you were away"})
    assert away["queued"] == [amy.name], away
    c = srv.client()
    c.send({"type": "auth", "user": amy.name, "password": PASSWORD, "features": list(ALL)})
    assert c.recv()["type"] == "auth_ok"
    roster = c.recv()
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    c.send({"type": "ping"})
    frames = []
    while (f := c.recv())["type"] != "pong":
        if f["type"] == "roster":
            c.send({"type": "roster_ack", "seq": f["seq"]})
        else:
            frames.append(f)
    assert [f["type"] for f in frames] == ["rooms", "markers", "msg"], frames
    assert frames[2]["offline"] is True
    rooms = frames[0]
    assert set(rooms) == {"type", "rooms", "invites"}
    assert sorted(rooms["rooms"], key=lambda r: r["room"]) == sorted(
        [
            {
                "room": busy,
                "topic": "busy one",
                "invite_only": False,
                "owner": owner.name,
                "members": sorted([owner.name, zed.name, amy.name]),
                "last": last,
            },
            {
                "room": quiet,
                "topic": "",
                "invite_only": False,
                "owner": owner.name,
                "members": sorted([owner.name, amy.name]),
                "last": 0,
            },
        ],
        key=lambda r: r["room"],
    )
    assert rooms["invites"] == [{"room": invited, "by": owner.name}]


def test_no_frame_of_a_room_reaches_a_session_before_its_rooms_frame(srv: ServerProc) -> None:
    """Events while a session waits in ROSTER are in the `rooms` frame it gets at its ack,
    not sent before it."""
    owner, u = login(srv, uniq("o")), uniq("u")
    member = login(srv, u)
    room, invited = uniq_room(), uniq_room("inv")
    create(owner, room)
    join(member, room, owner)
    c = srv.client()
    c.send({"type": "auth", "user": u, "password": PASSWORD, "features": list(ALL)})
    assert c.recv()["type"] == "auth_ok"
    roster = c.recv()
    assert roster["type"] == "roster" and roster["full"] is True
    owner.ok({"type": "topic", "room": room, "topic": "while waiting"})
    create(owner, invited, invite_only=True)
    owner.ok({"type": "invite", "room": invited, "user": u})
    sent = owner.ask({"type": "send", "to": room, "text": "while waiting"})
    member.sync()  # the events reached the user's session in CHAT
    assert c.silent(0.2)
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    first = c.recv()
    while first["type"] == "roster":
        c.send({"type": "roster_ack", "seq": first["seq"]})
        first = c.recv()
    assert first == {
        "type": "rooms",
        "rooms": [
            {
                "room": room,
                "topic": "while waiting",
                "invite_only": False,
                "owner": owner.name,
                "members": sorted([owner.name, u]),
                "last": sent["msg_id"],
            }
        ],
        "invites": [{"room": invited, "by": owner.name}],
    }


def test_a_member_who_was_away_reads_the_room_in_its_history_not_as_offline_messages(
    srv: ServerProc,
) -> None:
    owner, away = login(srv, uniq("o")), uniq("away")
    member = login(srv, away)
    room = uniq_room()
    create(owner, room)
    join(member, room, owner)
    member.send({"type": "bye"})
    member.c.expect_closed()
    sent = owner.ask({"type": "send", "to": room, "text": "said while away"})
    back = login(srv, away, register=False)
    assert [f["type"] for f in back.login_frames] == ["rooms", "markers"], back.login_frames
    assert back.login_frame("rooms")["rooms"][0]["last"] == sent["msg_id"]
    assert back.login_frame("markers")["markers"] == [
        {"with": room, "upto": 0, "last": sent["msg_id"], "unread": 1}
    ]
    page = back.ask({"type": "history", "with": room})
    assert [m["text"] for m in page["messages"]] == ["said while away"]
    assert back.drain() == []


# --- messages ------------------------------------------------------------------------------------
def test_a_room_message_reaches_every_rooms_session_of_every_member_but_the_sending_one(
    srv: ServerProc,
) -> None:
    a, b = uniq("a"), uniq("b")
    a1 = login(srv, a)
    a2 = login(srv, a, features=["rooms"], register=False)
    a_old = login(srv, a, features=None, register=False)
    a_echo = login(srv, a, features=["echo", "read"], register=False)
    b1 = login(srv, b)
    b_old = login(srv, b, features=[], register=False)
    room = uniq_room()
    create(a1, room)
    join(b1, room, a1)
    a1.send({"type": "send", "id": "the-send", "to": room, "text": "hello room"})
    sent = a1.answer("the-send")
    assert set(sent) == {"type", "id", "msg_id", "room"}, sent
    assert (sent["type"], sent["id"], sent["room"]) == ("sent", "the-send", room)
    for s in (a2, b1):
        (m,) = [f for f in s.drain() if f["type"] == "msg"]
        assert set(m) - {"offline"} == {"type", "id", "from", "to", "text", "ts"}, m
        assert not m.get("offline") and isinstance(m["ts"], float)
        assert (m["id"], m["from"], m["to"], m["text"]) == (sent["msg_id"], a, room, "hello room")
    for s in (a1, a_old, a_echo, b_old):
        assert [f for f in s.drain() if f["type"] == "msg"] == [], s.features


def test_sends_to_a_room_in_one_write_are_each_answered_in_order_and_delivered_in_order(
    srv: ServerProc,
) -> None:
    # One write: the sends reach the server as one batch, answered by one call (fanout).
    a, b = login(srv, uniq("a")), login(srv, uniq("b"))
    room = uniq_room()
    create(a, room)
    join(b, room, a)
    sends = [{"type": "send", "id": f"s{i}", "to": room, "text": f"t{i}"} for i in range(30)]
    answers = a.pipeline(sends)
    assert [set(f) for f in answers] == [{"type", "id", "msg_id", "room"}] * 30
    assert [(f["type"], f["id"], f["room"]) for f in answers] == [
        ("sent", f"s{i}", room) for i in range(30)
    ]
    ids = [f["msg_id"] for f in answers]
    assert ids == sorted(set(ids))  # one message each, in the order sent
    got = b.msgs(30)
    assert [(m["id"], m["text"]) for m in got] == [(ids[i], f"t{i}") for i in range(30)]


def test_only_members_send_to_a_room(srv: ServerProc) -> None:
    owner, member, x = login(srv, uniq("o")), login(srv, uniq("m")), login(srv, uniq("x"))
    pub, priv = uniq_room("pub"), uniq_room("priv")
    create(owner, pub)
    create(owner, priv, invite_only=True)
    join(member, pub, owner)
    x.refused({"type": "send", "to": pub, "text": "hi"}, "not_member")
    x.refused({"type": "send", "to": priv, "text": "hi"}, "no_such_room")
    x.refused({"type": "send", "to": uniq_room("none"), "text": "hi"}, "no_such_room")
    owner.ok({"type": "invite", "room": priv, "user": x.name})
    x.refused({"type": "send", "to": priv, "text": "hi"}, "not_member")
    assert [f for f in owner.drain() + member.drain() if f["type"] == "msg"] == []


# --- history -------------------------------------------------------------------------------------
def test_room_history_is_for_members_from_the_rooms_beginning_with_v11_paging(
    srv: ServerProc,
) -> None:
    owner, late, x = login(srv, uniq("o")), login(srv, uniq("late")), login(srv, uniq("x"))
    room, priv = uniq_room(), uniq_room("priv")
    create(owner, room)
    create(owner, priv, invite_only=True)
    sents = [owner.ask({"type": "send", "to": room, "text": f"m{i}"}) for i in range(5)]
    ids = [s["msg_id"] for s in sents]
    join(late, room, owner)
    page = late.ask({"type": "history", "with": room})
    assert set(page) == {"type", "id", "messages", "more"} and page["more"] is False
    assert [(m["id"], m["from"], m["to"], m["text"]) for m in page["messages"]] == [
        (i, owner.name, room, f"m{n}") for n, i in enumerate(ids)
    ]
    for m in page["messages"]:
        assert set(m) == {"id", "from", "to", "text", "ts"} and isinstance(m["ts"], float), m
    newest = late.ask({"type": "history", "with": room, "limit": 2})
    assert [m["id"] for m in newest["messages"]] == ids[3:] and newest["more"] is True
    older = late.ask({"type": "history", "with": room, "limit": 2, "before": ids[3]})
    assert [m["id"] for m in older["messages"]] == ids[1:3] and older["more"] is True
    oldest = late.ask({"type": "history", "with": room, "limit": 2, "before": ids[1]})
    assert [m["id"] for m in oldest["messages"]] == ids[:1] and oldest["more"] is False
    late.refused({"type": "history", "with": room, "limit": 201}, "bad_request")
    x.refused({"type": "history", "with": room}, "not_member")
    x.refused({"type": "history", "with": priv}, "no_such_room")
    owner.ok({"type": "invite", "room": priv, "user": x.name})
    x.refused({"type": "history", "with": priv}, "not_member")
    x.refused({"type": "history", "with": uniq_room("none")}, "no_such_room")
    # a room's messages are not in anyone's "*" or personal history
    for s, peer in ((late, "*"), (late, owner.name), (owner, late.name)):
        texts = [m["text"] for m in s.ask({"type": "history", "with": peer})["messages"]]
        assert not {f"m{i}" for i in range(5)} & set(texts), (peer, texts)


# --- one order per room --------------------------------------------------------------------------
@pytest.mark.parametrize("going", ["leave", "kick"])
def test_events_and_messages_reach_every_session_in_one_order_and_nothing_after_going(
    srv: ServerProc, going: str
) -> None:
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    a1, a2 = login(srv, a), login(srv, a, register=False)
    b1, b2 = login(srv, b), login(srv, b, register=False)
    c1, c2 = login(srv, c), login(srv, c, register=False)
    room = uniq_room()
    create(a1, room)
    join(b1, room)
    join(c1, room)
    for s in (a1, a2, b1, b2, c1, c2):
        s.drain()
    burst = [{"type": "send", "id": f"s{i}", "to": room, "text": f"t{i}"} for i in range(120)]
    a1.c.send_raw(b"".join(frame(x) for x in burst[:60]))
    b1.send({"type": "topic", "id": "top", "room": room, "topic": "mid-burst"})
    if going == "leave":
        c1.send({"type": "leave", "id": "go", "room": room})
        goer = c1
    else:
        a2.send({"type": "kick", "id": "go", "room": room, "user": c})
        goer = a2
    a1.c.send_raw(b"".join(frame(x) for x in burst[60:]))
    b1.send({"type": "topic", "id": "top2", "room": room, "topic": "after"})
    for x in burst:
        assert a1.answer(x["id"], 20)["type"] == "sent"
    assert b1.answer("top") == {"type": "ok", "id": "top"}
    assert b1.answer("top2") == {"type": "ok", "id": "top2"}
    assert goer.answer("go") == {"type": "ok", "id": "go"}
    seqs = {s: [room_key(f) for f in of_room(s.drain(), room)] for s in (a1, a2, b1, b2, c1, c2)}
    full = seqs[a2]
    assert len([k for k in full if k[0] == "msg"]) == 120
    event = "left" if going == "leave" else "kicked"
    gone = ("event", event, c, a if going == "kick" else None, None)
    mid, after = ("event", "topic", b, b, "mid-burst"), ("event", "topic", b, b, "after")
    events = [k for k in full if k[0] == "event"]
    assert sorted(events) == sorted([gone, mid, after]), events
    assert events.index(mid) < events.index(after)
    msg_ids = [k[1] for k in full if k[0] == "msg"]
    assert msg_ids == sorted(msg_ids)
    assert seqs[b1] == full and seqs[b2] == full
    assert seqs[a1] == [k for k in full if k[0] == "event"]  # not its own messages
    gone_at = full.index(gone)
    assert seqs[c1] == full[: gone_at + 1] and seqs[c2] == full[: gone_at + 1]


# --- limits --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(
        tmp_path_factory.mktemp("limits"), "--max-rooms-per-user", "3", "--max-room-members", "3"
    )


def test_max_rooms_per_user_refuses_a_create_or_join_past_it(limited: ServerProc) -> None:
    a, b = login(limited, uniq("a")), login(limited, uniq("b"))
    mine = [uniq_room() for _ in range(3)]
    for room in mine:
        create(a, room)
    fourth = uniq_room()
    a.refused({"type": "room_create", "room": fourth}, "not_allowed")
    create(b, fourth)  # the name was not taken by the refused create
    a.refused({"type": "join", "room": fourth}, "not_allowed")
    a.ok({"type": "join", "room": mine[0]})  # a member already: still ok
    assert b.drain() == []
    a.ok({"type": "leave", "room": mine[0]})
    join(a, fourth, b)


def test_max_room_members_refuses_a_join_past_it(limited: ServerProc) -> None:
    owner = login(limited, uniq("o"))
    others = [login(limited, uniq("m")) for _ in range(3)]
    room = uniq_room()
    create(owner, room)
    join(others[0], room, owner)
    join(others[1], room, owner)
    others[2].refused({"type": "join", "room": room}, "not_allowed")
    assert owner.drain() == []
    assert room_entry(owner.ask({"type": "room_list"}), room)["members"] == 3  # type: ignore[index]


def test_a_user_holds_at_most_100_pending_invites(srv: ServerProc) -> None:
    inviter, target = login(srv, uniq("i")), login(srv, uniq("t"), features=["read"])
    rooms = [uniq_room("many") for _ in range(101)]
    answers = inviter.pipeline(
        [{"type": "room_create", "room": r, "invite_only": True} for r in rooms]
        + [{"type": "invite", "room": r, "user": target.name} for r in rooms[:100]]
    )
    assert {a["type"] for a in answers} == {"ok"}, [a for a in answers if a["type"] != "ok"]
    inviter.refused({"type": "invite", "room": rooms[100], "user": target.name}, "not_allowed")
    t = login(srv, target.name, register=False)
    assert len(t.login_frame("rooms")["invites"]) == 100
    assert rooms[100] not in {i["room"] for i in t.login_frame("rooms")["invites"]}
    t.ok({"type": "join", "room": rooms[0]})  # one used: room for one more
    inviter.ok({"type": "invite", "room": rooms[100], "user": target.name})


# --- kept across a restart, sealed at rest --------------------------------------------------
def snapshot(
    server: ServerProc, names: list[str], rooms: list[str], reader: str, last: bool = True
) -> Frame:
    """What each user sees of the rooms: its `rooms` frame (without each room's `last`
    unless `last`), its room_list, and the rooms' history (read by `reader`, a member of
    each)."""
    out: Frame = {}
    for name in names:
        s = login(server, name, register=False)
        listing = s.ask({"type": "room_list", "id": "l"})
        state = s.login_frame("rooms")
        if not last:
            state["rooms"] = [{k: v for k, v in r.items() if k != "last"} for r in state["rooms"]]
        out[name] = (state, listing)
        if name == reader:
            for room in rooms:
                out[room] = s.ask({"type": "history", "id": "h", "with": room})
        s.close()
    return out


def rooms_to_keep(server: ServerProc) -> int:
    """Rooms with members, a topic changed, invites, an owner gone, messages (the last one
    after the room's last change): the id of the newest message."""
    ann, bob, cid, dan = (login(server, n) for n in ("ann", "bob", "cid", "dan"))
    pub, priv = "#Pub", "#priv"
    create(cid, "#gone", topic="short-lived")  # deleted before the restart, with its history
    cid.ask({"type": "send", "to": "#gone", "text": "lost"})
    cid.ok({"type": "invite", "room": "#gone", "user": "dan"})
    cid.ok({"type": "leave", "room": "#gone"})
    create(ann, pub, topic="first")
    join(bob, pub)
    join(cid, pub)
    create(ann, priv, invite_only=True, topic="secret plans")
    ann.ok({"type": "invite", "room": priv, "user": "bob"})
    join(bob, priv)
    ann.ok({"type": "invite", "room": priv, "user": "dan"})
    ann.ask({"type": "send", "to": pub, "text": "one"})
    bob.ask({"type": "send", "to": pub, "text": "two"})
    cid.ok({"type": "topic", "room": pub, "topic": "second"})
    ann.ok({"type": "leave", "room": pub})  # bob owns it now
    create(ann, "#order")  # dan joins before cid: dan is next in line, though cid sorts first
    join(dan, "#order")
    join(cid, "#order")
    last = ann.ask({"type": "send", "to": priv, "text": "three"})["msg_id"]
    for s in (ann, bob, cid, dan):
        s.close()
    return int(last)


def test_rooms_members_topics_invites_owners_and_history_survive_a_restart(
    start_server: Start,
) -> None:
    server = start_server()
    last = rooms_to_keep(server)
    names, rooms, pub, priv = ["ann", "bob", "cid", "dan"], ["#Pub", "#priv"], "#Pub", "#priv"
    before = snapshot(server, names, rooms, "bob", last=False)
    assert {r["room"]: r["owner"] for r in before["bob"][0]["rooms"]} == {pub: "bob", priv: "ann"}
    assert before["dan"][0]["invites"] == [{"room": priv, "by": "ann"}]
    assert [m["text"] for m in before[pub]["messages"]] == ["one", "two"]
    server = restart(server, start_server)
    after = snapshot(server, names, rooms, "bob", last=False)
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])
    dan = login(server, "dan", register=False)
    join(dan, priv)  # the invite was kept
    newer = dan.ask({"type": "send", "to": priv, "text": "four"})["msg_id"]
    assert newer > last
    stranger = login(server, "eve")
    stranger.refused({"type": "join", "room": priv}, "no_such_room")
    stranger.refused({"type": "room_create", "room": "#PUB"}, "room_exists")
    assert before["dan"][0]["invites"] == [{"room": priv, "by": "ann"}]  # not #gone's
    ann = login(server, "ann", register=False)
    ann.ok({"type": "leave", "room": "#order"})  # the order of joining was kept
    entry = room_entry(ann.ask({"type": "room_list"}), "#order")
    assert entry is not None and entry["owner"] == "dan"
    create(stranger, "#gone")  # still free, and empty
    assert stranger.ask({"type": "history", "with": "#gone"})["messages"] == []


def test_the_rooms_last_message_id_survives_a_restart(start_server: Start) -> None:
    server = start_server()
    last = rooms_to_keep(server)
    before = snapshot(server, ["bob"], [], "bob")["bob"][0]
    lasts = {r["room"]: r["last"] for r in before["rooms"]}
    assert lasts["#priv"] == last and 0 < lasts["#Pub"] < last
    server = restart(server, start_server)
    assert snapshot(server, ["bob"], [], "bob")["bob"][0] == before


def test_room_names_topics_and_members_are_never_in_clear_on_disk(
    start_server: Start, tmp_path: Any
) -> None:
    server = start_server()
    owner, member = login(server, "marmaduke"), login(server, "philomena")
    invited = "octaviana"
    register(server, invited)
    create(owner, "#Zanzibar", topic="quixotic walrus agenda")
    join(member, "#Zanzibar")
    create(owner, "#Kilimanjaro", invite_only=True)
    owner.ok({"type": "invite", "room": "#Kilimanjaro", "user": invited})
    owner.ok({"type": "topic", "room": "#Kilimanjaro", "topic": "serendipitous platypus"})
    member.ask({"type": "send", "to": "#Zanzibar", "text": "hello"})
    owner.ask({"type": "send", "to": ["philomena"], "text": "just us"})
    member.send({"type": "read", "with": "#Zanzibar", "upto": 1})
    member.send({"type": "read", "with": "marmaduke", "upto": 1})
    member.sync()
    words = [
        "Zanzibar",
        "zanzibar",
        "Kilimanjaro",
        "kilimanjaro",
        "quixotic walrus",
        "serendipitous platypus",
        "marmaduke",
        "philomena",
        "octaviana",
    ]
    assert in_clear(tmp_path, words) == []
    server = restart(server, start_server)
    assert in_clear(tmp_path, words) == []
    assert {p.name for p in tmp_path.iterdir()} >= {"history.db", "users.db"}
    # the files did hold them: the rooms are back
    s = login(server, invited, register=False)
    assert s.login_frame("rooms")["invites"] == [{"room": "#Kilimanjaro", "by": "marmaduke"}]
    entry = room_entry(s.ask({"type": "room_list"}), "#Zanzibar")
    assert entry is not None and entry["topic"] == "quixotic walrus agenda"
