"""Protocol v1.2 section 1 from outside: features asked for at login, and what a connection
that was not granted one never sees; `sent.msg_id`; one answer per request, in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import PASSWORD, assert_error, raw_client, register
from e2e.v12_support import (
    ALL,
    FEATURE_FRAMES,
    Frame,
    Session,
    closing,
    login,
    module_server,
    uniq,
    uniq_room,
)
from wire import frame


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    yield from module_server(tmp_path_factory.mktemp("features"))


@pytest.fixture
def srv(shared: ServerProc) -> Iterator[ServerProc]:
    yield from closing(shared)


def auth_ok_payload(server: ServerProc, name: str, **auth: Any) -> bytes:
    c = raw_client(server)
    c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True} | auth)
    return c.recv_payload()


def no_feature_frames(frames: list[Frame], user: str) -> None:
    """Nothing of a v1.2 feature: no feature frame, no room message, not its own message."""
    for f in frames:
        assert f["type"] not in FEATURE_FRAMES, f
        if f["type"] == "msg":
            assert not (isinstance(f["to"], str) and f["to"].startswith("#")), f
            assert f["from"] != user, f  # v1 clarification 8: never its own (no echo)
        if f["type"] == "sent":
            assert "room" not in f, f


# --- what is granted ---------------------------------------------------------------------------
def test_granted_features_are_the_known_ones_asked_in_the_order_asked_each_once(
    srv: ServerProc,
) -> None:
    name = uniq("feat")
    asked = ["typing", "nope", "rooms", "echo", "typing", "Rooms", "read", "", "rooms"]
    payload = auth_ok_payload(srv, name, features=asked)
    assert json.loads(payload) == {
        "type": "auth_ok",
        "user": name,
        "features": ["typing", "rooms", "echo", "read"],
    }


def test_auth_without_features_gets_the_v11_auth_ok_byte_for_byte(srv: ServerProc) -> None:
    name = uniq("old")
    payload = auth_ok_payload(srv, name)
    assert payload == json.dumps({"type": "auth_ok", "user": name}, separators=(",", ":")).encode(
        "utf-8"
    )


@pytest.mark.parametrize("asked", [[], ["nope"], ["ROOMS", "Read"]])
def test_asking_for_nothing_known_gets_an_empty_features_list(
    srv: ServerProc, asked: list[str]
) -> None:
    name = uniq("none")
    payload = auth_ok_payload(srv, name, features=asked)
    assert json.loads(payload) == {"type": "auth_ok", "user": name, "features": []}


@pytest.mark.parametrize(
    "asked",
    [["x" * 100, "rooms"], [f"future{i}" for i in range(19)] + ["rooms"]],
    ids=["a-long-name", "twenty-names"],
)
def test_unknown_feature_names_are_never_an_error_however_long_or_many(
    srv: ServerProc, asked: list[str]
) -> None:
    name = uniq("many")
    answer = json.loads(auth_ok_payload(srv, name, features=asked))
    assert answer["type"] == "auth_ok", answer
    assert answer["features"] in ([], ["rooms"]), answer
    if len(asked) == 2:
        assert answer["features"] == ["rooms"]


@pytest.mark.parametrize("features", ["rooms", [1], [None], {"rooms": True}, 7])
def test_features_not_a_list_of_strings_is_bad_request_and_the_login_can_go_on(
    srv: ServerProc, features: Any
) -> None:
    name = uniq("bad")
    c = srv.client()
    c.send(
        {"type": "auth", "user": name, "password": PASSWORD, "register": True, "features": features}
    )
    assert_error(c.recv(), "bad_request")
    c.send(
        {
            "type": "auth",
            "user": name,
            "password": PASSWORD,
            "register": True,
            "features": ["rooms"],
        }
    )
    assert c.recv() == {"type": "auth_ok", "user": name, "features": ["rooms"]}


def test_a_failed_login_grants_nothing_and_the_next_auth_asks_anew(srv: ServerProc) -> None:
    name = uniq("retry")
    register(srv, name)
    c = srv.client()
    c.send({"type": "auth", "user": name, "password": "wrong", "features": ["rooms", "read"]})
    assert_error(c.recv(), "bad_credentials")
    c.send({"type": "auth", "user": name, "password": PASSWORD, "features": ["typing"]})
    assert c.recv() == {"type": "auth_ok", "user": name, "features": ["typing"]}
    roster = c.recv()
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    c.send({"type": "ping"})
    assert c.recv() == {"type": "pong"}  # no rooms, no markers


# --- a connection that was not granted a feature ---------------------------------------------
def test_a_v11_connection_never_gets_a_frame_of_any_feature(srv: ServerProc) -> None:
    """Rooms, markers, room events, read, typing and echoes all happen around two v1.1
    sessions of a user (no `features` field, and `features: []`): none reaches them, at
    any time, nor at a later v1.1 login."""
    u, v = uniq("u"), uniq("v")
    old = login(srv, u, features=None)
    empty = login(srv, u, features=[], register=False)
    assert empty.auth_ok == {"type": "auth_ok", "user": u, "features": []}
    mine = login(srv, u, register=False)
    other = login(srv, v)
    pub, priv = uniq_room("pub"), uniq_room("priv")
    other.ok({"type": "room_create", "room": pub, "topic": "open"})
    other.ok({"type": "room_create", "room": priv, "invite_only": True})
    other.ok({"type": "invite", "room": priv, "user": u})
    mine.ok({"type": "join", "room": pub})
    other.ok({"type": "topic", "room": pub, "topic": "changed"})
    sent = other.ask({"type": "send", "to": pub, "text": "in the room"})
    assert sent["type"] == "sent"
    other.ask({"type": "send", "to": [u], "text": "to you"})
    other.send({"type": "typing", "to": u, "state": "active"})
    other.send({"type": "typing", "to": pub, "state": "active"})
    other.sync()
    mine.send({"type": "read", "with": pub, "upto": sent["msg_id"]})
    mine.ask({"type": "send", "to": "*", "text": "echo me"})
    mine.ask({"type": "send", "to": [v], "text": "echo me too"})
    mine.ask({"type": "send", "to": pub, "text": "mine in the room"})
    other.ok({"type": "kick", "room": pub, "user": u})
    later = login(srv, u, features=None, register=False)
    assert later.login_frames == [], later.login_frames
    for s in (old, empty, later):
        frames = s.drain()
        no_feature_frames(s.seen, u)
        assert all(f["type"] == "msg" for f in frames), frames
    # the v1.1 sessions did get the private message, like any v1.1 client
    assert [f["text"] for f in old.seen if f["type"] == "msg"] == ["to you"]
    assert [f["text"] for f in empty.seen if f["type"] == "msg"] == ["to you"]


def test_sessions_get_only_the_frames_of_the_features_they_were_granted(srv: ServerProc) -> None:
    u, v = uniq("u"), uniq("v")
    actor = login(srv, u)
    by_feature = {f: login(srv, u, features=[f], register=False) for f in ALL}
    other = login(srv, v)
    room = uniq_room()
    actor.ok({"type": "room_create", "room": room})
    other.ok({"type": "join", "room": room})
    sent = other.ask({"type": "send", "to": room, "text": "hello room"})
    other.send({"type": "typing", "to": [u], "state": "active"})
    other.sync()
    assert [f for f in other.inbox if f["type"] == "error"] == []
    actor.send({"type": "read", "with": room, "upto": sent["msg_id"]})
    actor.ask({"type": "send", "to": "*", "text": "from u"})
    got = {f: s.drain() for f, s in by_feature.items()}
    kinds = {f: {x["type"] for x in frames} for f, frames in got.items()}
    assert by_feature["rooms"].login_frame("rooms") == {"type": "rooms", "rooms": [], "invites": []}
    assert kinds["rooms"] == {"room_event", "msg"}, got["rooms"]
    assert [x["to"] for x in got["rooms"] if x["type"] == "msg"] == [room]
    assert kinds["read"] == {"read"}, got["read"]
    assert kinds["typing"] == {"typing"}, got["typing"]
    assert [(x["type"], x["from"], x["to"]) for x in got["echo"]] == [("msg", u, "*")]
    assert [x["type"] for x in by_feature["read"].login_frames] == ["markers"]
    for f in ("echo", "typing"):
        assert by_feature[f].login_frames == [], (f, by_feature[f].login_frames)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("rooms", {"type": "room_create", "room": "#ROOM2"}),
    ("rooms", {"type": "join", "room": "#ROOM"}),
    ("rooms", {"type": "leave", "room": "#ROOM"}),
    ("rooms", {"type": "invite", "room": "#ROOM", "user": "OWNER"}),
    ("rooms", {"type": "kick", "room": "#ROOM", "user": "OWNER"}),
    ("rooms", {"type": "topic", "room": "#ROOM", "topic": "t"}),
    ("rooms", {"type": "room_list"}),
    ("rooms", {"type": "send", "to": "#ROOM", "text": "hi"}),
    ("rooms", {"type": "history", "with": "#ROOM"}),
    ("rooms", {"type": "read", "with": "#ROOM", "upto": 1}),
    ("rooms", {"type": "typing", "to": "#ROOM", "state": "active"}),
    ("read", {"type": "read", "with": "*", "upto": 1}),
    ("read", {"type": "read", "with": "OWNER", "upto": 1}),
    ("typing", {"type": "typing", "to": "OWNER", "state": "active"}),
    ("typing", {"type": "typing", "to": ["OWNER"], "state": "paused"}),
]


@pytest.mark.parametrize("granted", [None, "others"], ids=["v11", "others"])
@pytest.mark.parametrize(
    ("feature", "request_"), CASES, ids=[f"{c[1]['type']}-{i}" for i, c in enumerate(CASES)]
)
def test_a_frame_or_field_of_a_feature_not_granted_is_bad_request_with_its_id_and_does_nothing(
    srv: ServerProc, granted: str | None, feature: str, request_: dict[str, Any]
) -> None:
    u, owner_name = uniq("u"), uniq("own")
    owner = login(srv, owner_name)
    room = uniq_room()
    owner.ok({"type": "room_create", "room": room})
    owner.event(room, "created")
    member = login(srv, u)  # the same user, granted everything: a member of the room
    member.ok({"type": "join", "room": room})
    owner.event(room, "joined")
    member.event(room, "joined")
    features = None if granted is None else [f for f in ALL if f != feature]
    limited = login(srv, u, features=features, register=False)
    text = json.dumps(request_).replace("#ROOM", room).replace("OWNER", owner_name)
    obj = json.loads(text)
    if obj["type"] not in ("read", "typing"):  # the two without an id
        obj["id"] = "the-id"
        answer = limited.ask(obj)
        assert_error(answer, "bad_request", "the-id")
    else:
        limited.send(obj)
        answer = limited.take(lambda f: f["type"] == "error")
        assert_error(answer, "bad_request")
    limited.sync()  # still usable
    assert owner.drain() == []
    assert member.drain() == []
    if obj["type"] == "room_create":  # nothing was created: the name is free
        owner.ok({"type": "room_create", "room": obj["room"]})


# --- sent.msg_id ---------------------------------------------------------------------------------
@pytest.mark.parametrize("features", [None, list(ALL)], ids=["v11", "v12"])
def test_every_sent_carries_the_id_of_the_msg_frames_of_that_send(
    srv: ServerProc, features: list[str] | None
) -> None:
    a, b, c, away = uniq("a"), uniq("b"), uniq("c"), uniq("away")
    register(srv, away)
    sender = login(srv, a, features=features)
    bob, carol = login(srv, b, features=None), login(srv, c, features=None)
    ids = []
    for to, readers in (("*", [bob, carol]), ([b], [bob]), ([b, c, "nobody1"], [bob, carol])):
        sent = sender.ask({"type": "send", "to": to, "text": f"to {to}"})
        assert sent["type"] == "sent" and isinstance(sent["msg_id"], int), sent
        assert not isinstance(sent["msg_id"], bool)
        for r in readers:
            (m,) = r.msgs(1)
            assert m["id"] == sent["msg_id"] and m["text"] == f"to {to}", (m, sent)
        ids.append(sent["msg_id"])
    queued = sender.ask({"type": "send", "to": [away], "text": "for later"})
    assert queued["queued"] == [away]
    ids.append(queued["msg_id"])
    assert ids == sorted(set(ids))  # one send, one message, one id
    late = login(srv, away, features=None, register=False)
    (offline,) = late.msgs(1)
    assert offline["id"] == queued["msg_id"] and offline["offline"] is True
    page = sender.ask({"type": "history", "with": b})
    assert [m["id"] for m in page["messages"]] == ids[1:3]


# --- one answer per request, in order ------------------------------------------------------------
def test_v12_requests_are_answered_once_each_in_the_order_received_with_the_other_answers(
    srv: ServerProc,
) -> None:
    """A send to someone offline waits for the disk (v1.1 section 3), a history for a
    reader: the room requests after them wait their turn."""
    away = uniq("away")
    register(srv, away)
    a = login(srv, uniq("a"))
    room = uniq_room()
    sequence: list[tuple[Frame, str | None]] = [
        ({"type": "ping"}, "pong"),
        ({"type": "room_create", "id": 1, "room": room}, "ok"),
        ({"type": "send", "id": "s1", "to": "*", "text": "x"}, "sent"),
        ({"type": "send", "id": "q1", "to": [away], "text": "kept for later"}, "sent"),
        ({"type": "room_list", "id": "l0"}, "room_list"),
        ({"type": "history", "id": "h1", "with": "*"}, "history"),
        ({"type": "room_list", "id": 2}, "room_list"),
        ({"type": "join", "id": "j", "room": "#nosuchroom0"}, "error"),
        ({"type": "user_search", "id": "u", "prefix": "a"}, "users"),
        ({"type": "topic", "id": 3, "room": room, "topic": "t"}, "ok"),
        ({"type": "ping"}, "pong"),
        ({"type": "send", "id": "s2", "to": room, "text": "y"}, "sent"),
        ({"type": "read", "with": room, "upto": 1}, None),
        ({"type": "typing", "to": room, "state": "active"}, None),
        ({"type": "read", "with": "bad name", "upto": 1}, "error"),
        ({"type": "typing", "to": [a.name], "state": "asleep"}, "error"),
        ({"type": "history", "id": "h2", "with": room}, "history"),
        ({"type": "invite", "id": "i", "room": room, "user": "nosuchuser0"}, "error"),
        ({"type": "send", "id": "q2", "to": [away], "text": "kept too"}, "sent"),
        ({"type": "invite", "id": "i2", "room": room, "user": away}, "ok"),
        ({"type": "join", "id": "j2", "room": room}, "ok"),
        ({"type": "kick", "id": "k", "room": room, "user": a.name}, "error"),
        ({"type": "leave", "id": 4, "room": room}, "ok"),
        ({"type": "ping"}, "pong"),
    ]
    a.c.send_raw(b"".join(frame(obj) for obj, _ in sequence))
    got: list[Frame] = []
    while sum(f["type"] == "pong" for f in got) < 3:
        f = a.pump(10)
        if f["type"] in ("pong", "error") or ("id" in f and f["type"] != "msg"):
            got.append(f)
    want = [(kind, obj.get("id")) for obj, kind in sequence if kind is not None]
    assert [(f["type"], f.get("id")) for f in got] == want, got
    for f, (_, rid) in zip(got, want, strict=True):
        if rid is not None:
            assert type(f["id"]) is type(rid), f
    a.inbox.clear()
    a.sync()  # and nothing more answers any of them
    assert not [f for f in a.inbox if f["type"] == "error" or ("id" in f and f["type"] != "msg")]


def test_v12_requests_outside_chat_are_refused_with_their_id(srv: ServerProc) -> None:
    name = uniq("early")
    c = srv.client()
    c.send({"type": "room_create", "id": "c0", "room": uniq_room()})
    f = c.recv()
    assert f["type"] == "error" and f["code"] in ("not_authenticated", "bad_request"), f
    assert f["id"] == "c0", f
    c.send(
        {
            "type": "auth",
            "user": name,
            "password": PASSWORD,
            "register": True,
            "features": list(ALL),
        }
    )
    assert c.recv()["type"] == "auth_ok"
    roster = c.recv()
    room = uniq_room()
    for obj in (
        {"type": "room_create", "id": "c1", "room": room},
        {"type": "room_list", "id": "l1"},
        {"type": "user_search", "id": "u1", "prefix": ""},
    ):
        c.send(obj)
        assert_error(c.recv(), "not_ready", obj["id"])
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    s = Session(c, name, {})
    s.ok({"type": "room_create", "room": room})  # nothing was created in ROSTER
