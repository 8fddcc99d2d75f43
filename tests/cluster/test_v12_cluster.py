"""Protocol v1.2 section 10 from outside: every rule of v1.2 across three real nodes on one Redis.

Rooms, events, markers, echoes and typing reach every process, in order per
room and per user (docs/cluster.md, "Protocol v1.2 in the cluster"). Real
`chat-server` nodes, a real `redis-server`, raw frames (tests/wire.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.keyfile import load_or_create_key
from conftest import ServerProc
from e2e.server_support import PASSWORD, register

from .conftest import AnyRedis, at_rest
from .v12 import Session, err, ok, room_items, wait_until

Start = Callable[..., ServerProc]


def people(node: ServerProc, *names: str) -> None:
    register(node, *names)


def joined(s: Session, room: str, user: str) -> None:
    s.expect("room_event", room=room, event="joined", user=user)


# --- rooms across nodes ------------------------------------------------------------------------
def test_a_room_made_on_one_node_is_joined_and_used_from_the_others(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol")
    alice, bob, carol = Session(a, "alice"), Session(b, "bob"), Session(c, "carol")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#Dev", "topic": "the build"}))
    created = alice.expect("room_event", event="created")
    assert (created["room"], created["user"], created["topic"]) == ("#Dev", "alice", "the build")
    ok(bob.ask({"type": "join", "id": 2, "room": "#dev"}))  # another case: the same room
    joined(bob, "#Dev", "bob")
    joined(alice, "#Dev", "bob")
    ok(carol.ask({"type": "join", "id": 3, "room": "#DEV"}))
    for s in (alice, bob, carol):
        joined(s, "#Dev", "carol")
    listed = carol.ask({"type": "room_list", "id": 4})
    assert [(r["room"], r["members"], r["member"], r["owner"]) for r in listed["rooms"]] == [
        ("#Dev", 3, True, "alice")
    ]
    sent = carol.ask({"type": "send", "id": 5, "to": "#dev", "text": "hello from c"})
    assert sent["type"] == "sent" and sent["room"] == "#dev" and isinstance(sent["msg_id"], int)
    for s in (alice, bob):
        msg = s.expect("msg", text="hello from c")
        assert (msg["from"], msg["to"], msg["id"]) == ("carol", "#dev", sent["msg_id"])
    carol.sync()
    assert not carol.take("msg")  # the sending connection gets its sent, not the msg
    # A session entering later, on any node, gets the room in its `rooms` frame.
    late = Session(b, "alice")
    assert late.rooms is not None
    (state,) = late.rooms["rooms"]
    assert (state["room"], state["members"], state["last"]) == (
        "#Dev",
        ["alice", "bob", "carol"],
        sent["msg_id"],
    )
    # The room's history, from a member on another node (stored within a second).
    assert wait_until(
        lambda: (
            [
                m["text"]
                for m in bob.ask({"type": "history", "id": 6, "with": "#DEV", "limit": 10})[
                    "messages"
                ]
            ]
            == ["hello from c"]
        ),
        3,
    )


def test_events_and_messages_reach_every_member_in_one_order_on_every_node(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol", "dave")
    alice, bob, carol, dave = (
        Session(a, "alice"),
        Session(b, "bob"),
        Session(c, "carol"),
        Session(c, "dave"),
    )
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#ops"}))
    for s in (bob, carol, dave):
        ok(s.ask({"type": "join", "id": 1, "room": "#ops"}))
    for s in (alice, bob, carol, dave):
        s.expect("room_event", event="joined", user="dave")
        s.take()
    burst = 40

    def blast(s: Session, tag: str) -> None:
        for i in range(burst):  # pipelined: the sents are read after
            s.c.send({"type": "send", "id": i, "to": "#ops", "text": f"{tag}{i}"})

    def change() -> None:
        time.sleep(0.02)
        carol.c.send({"type": "topic", "id": "t", "room": "#ops", "topic": "busy"})
        time.sleep(0.02)
        carol.c.send({"type": "leave", "id": "l", "room": "#ops"})

    threads = [
        threading.Thread(target=blast, args=(alice, "a")),
        threading.Thread(target=blast, args=(bob, "b")),
        threading.Thread(target=change),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (alice, bob):
        for i in range(burst):
            assert s.expect("sent", id=i)["room"] == "#ops"
    ok(carol.expect("ok", id="t"))
    ok(carol.expect("ok", id="l"))
    seen: dict[str, list[tuple[str, ...]]] = {}
    for s in (alice, bob, dave):
        s.wait_for("room_event", event="left", user="carol")
        want = 2 * burst - (burst if s is not dave else 0)
        assert wait_until(lambda s=s, want=want: _msgs(s) >= want, 10)
        s.sync()
        seen[s.name] = room_items(s.take(), "#ops")
    # One order: what two members both got came to both in the same order.
    everything = seen["dave"]
    assert len([i for i in everything if i[0] == "msg"]) == 2 * burst
    assert ("event", "topic", "carol") in everything and ("event", "left", "carol") in everything
    for name, own in (("alice", "a"), ("bob", "b")):
        mine = [i for i in everything if not (i[0] == "msg" and i[2].startswith(own))]
        assert seen[name] == mine, name
    # Each sender's messages in its order.
    for tag in ("a", "b"):
        texts = [i[2] for i in everything if i[0] == "msg" and i[2].startswith(tag)]
        assert texts == [f"{tag}{i}" for i in range(burst)]
    # Carol: after her own `left`, nothing more of the room.
    carol.sync()
    got = room_items(carol.take(), "#ops")
    assert ("event", "left", "carol") in got
    assert got[-1] == ("event", "left", "carol"), got[got.index(("event", "left", "carol")) :]
    assert got == everything[: everything.index(("event", "left", "carol")) + 1]


def _msgs(s: Session) -> int:
    s.pump(0.05)
    return sum(1 for f in s.inbox if f["type"] == "msg")


def test_after_a_kick_nothing_of_the_room_reaches_the_kicked_user_on_any_node(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob")
    alice, alice2 = Session(a, "alice"), Session(c, "alice")
    bob1, bob2 = Session(b, "bob"), Session(c, "bob")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#k"}))
    ok(bob1.ask({"type": "join", "id": 1, "room": "#k"}))
    bob2.expect("room_event", event="joined", user="bob")
    bob1.sync()
    bob1.take()
    burst = 60

    def blast() -> None:
        for i in range(burst):
            alice.c.send({"type": "send", "id": i, "to": "#k", "text": f"m{i}"})
            time.sleep(0.002)

    sender = threading.Thread(target=blast)
    sender.start()
    time.sleep(0.03)
    ok(alice2.ask({"type": "kick", "id": "k", "room": "#k", "user": "bob"}))
    sender.join()
    for i in range(burst):
        alice.expect("sent", id=i)
    for s in (bob1, bob2):
        s.wait_for("room_event", event="kicked", user="bob")
        s.pump(0.5)
        got = room_items(s.take(), "#k")
        assert got[-1] == ("event", "kicked", "bob"), "a message of the room after the kick"
        assert got[:-1] == [("msg", "alice", f"m{i}") for i in range(len(got) - 1)]
    err(bob1.ask({"type": "send", "id": "x", "to": "#k", "text": "still here?"}), "not_member")
    err(bob2.ask({"type": "history", "id": "h", "with": "#k", "limit": 5}), "not_member")


def test_two_nodes_creating_one_name_at_once_make_one_room(three: list[ServerProc]) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol")
    for attempt in range(5):
        alice, bob = Session(a, "alice"), Session(b, "bob")
        room = f"#race{attempt}"
        answers: dict[str, dict] = {}
        go = threading.Barrier(2)

        def create(s: Session, name: str, go: threading.Barrier, answers: dict) -> None:
            go.wait()
            answers[s.name] = s.ask({"type": "room_create", "id": 1, "room": name})

        threads = [
            threading.Thread(target=create, args=(alice, room, go, answers)),
            threading.Thread(target=create, args=(bob, room.upper(), go, answers)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kinds = sorted(f["type"] for f in answers.values())
        assert kinds == ["error", "ok"], answers
        loser = next(f for f in answers.values() if f["type"] == "error")
        assert loser["code"] == "room_exists"
    carol = Session(c, "carol")
    rooms = carol.ask({"type": "room_list", "id": 1})["rooms"]
    assert len(rooms) == 5 and all(r["members"] == 1 for r in rooms)


def test_an_invite_made_on_one_node_is_used_on_another(three: list[ServerProc]) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol")
    alice, bob, carol = Session(a, "alice"), Session(b, "bob"), Session(c, "carol")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#secret", "invite_only": True}))
    err(bob.ask({"type": "join", "id": 1, "room": "#secret"}), "no_such_room")
    ok(alice.ask({"type": "invite", "id": 2, "room": "#secret", "user": "bob"}))
    invited = bob.expect("room_event", event="invited")
    assert (invited["user"], invited["by"]) == ("bob", "alice")
    assert [r["room"] for r in bob.ask({"type": "room_list", "id": 2})["rooms"]] == ["#secret"]
    assert carol.ask({"type": "room_list", "id": 2})["rooms"] == []  # not told it exists
    ok(bob.ask({"type": "join", "id": 3, "room": "#SECRET"}))
    joined(alice, "#secret", "bob")
    err(carol.ask({"type": "join", "id": 3, "room": "#secret"}), "no_such_room")
    err(bob.ask({"type": "kick", "id": 4, "room": "#secret", "user": "alice"}), "not_allowed")
    err(alice.ask({"type": "invite", "id": 5, "room": "#secret", "user": "nobody"}), "no_such_user")


def test_an_account_made_a_moment_ago_elsewhere_is_invited_not_unknown(
    redis_server: AnyRedis, start_node: Start
) -> None:
    """A node hears of an account made on another node a moment later (the accounts
    channel); an invite of it meanwhile asks Redis (the rooms' thread), as a send to it
    does (tests/cluster/test_cluster.py). Here the channel never tells."""
    a = start_node(redis_server.url)
    people(a, "alice")
    alice = Session(a, "alice")
    link = Link(redis_server.url)
    link.publish = lambda *args: None  # type: ignore[method-assign]  # the news: not said
    elsewhere = RedisAccounts(link, Box(load_or_create_key(a.key_file)[0], load_cipher()), 10)
    assert elsewhere.register("newcomer", PASSWORD)
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#club", "invite_only": True}))
    ok(alice.ask({"type": "invite", "id": 2, "room": "#club", "user": "newcomer"}))
    err(alice.ask({"type": "invite", "id": 3, "room": "#club", "user": "nobody"}), "no_such_user")
    newcomer = Session(a, "newcomer")
    assert newcomer.rooms is not None
    assert [i["room"] for i in newcomer.rooms["invites"]] == ["#club"], newcomer.rooms
    ok(newcomer.ask({"type": "join", "id": 1, "room": "#club"}))


def test_the_owner_leaving_hands_over_and_the_last_one_leaving_frees_the_name(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol")
    alice, bob, carol = Session(a, "alice"), Session(b, "bob"), Session(c, "carol")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#tmp", "topic": "one"}))
    ok(bob.ask({"type": "join", "id": 2, "room": "#tmp"}))
    assert bob.ask({"type": "send", "id": 3, "to": "#tmp", "text": "gone soon"})["type"] == "sent"
    ok(alice.ask({"type": "leave", "id": 4, "room": "#tmp"}))
    owner = bob.expect("room_event", event="owner")
    assert owner["user"] == "bob"
    ok(bob.ask({"type": "leave", "id": 5, "room": "#tmp"}))
    bob.expect("room_event", event="deleted", user="bob")
    # The name is free again, on any node, and the history went with the room.
    ok(carol.ask({"type": "room_create", "id": 6, "room": "#TMP"}))
    assert carol.ask({"type": "history", "id": 7, "with": "#tmp", "limit": 9})["messages"] == []
    listed = alice.ask({"type": "room_list", "id": 8})["rooms"]
    assert [(r["room"], r["owner"], r["topic"]) for r in listed] == [("#TMP", "carol", "")]


# --- markers, echo, typing ---------------------------------------------------------------------
def test_a_marker_set_on_one_node_reaches_the_users_session_on_another_within_a_second(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob")
    bob = Session(c, "bob")
    sent = bob.ask({"type": "send", "id": 1, "to": "*", "text": "read me"})
    here, there = Session(a, "alice"), Session(b, "alice")
    quiet = Session(b, "alice", features=("rooms",))  # not granted `read`
    here.c.send({"type": "read", "with": "*", "upto": sent["msg_id"]})
    started = time.monotonic()
    got = there.expect("read", timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert got == {"type": "read", "with": "*", "upto": sent["msg_id"]}
    here.c.send({"type": "read", "with": "*", "upto": sent["msg_id"] - 1})  # never back
    there.pump(0.5)
    quiet.pump(0.1)
    assert not there.take("read") and not quiet.take("read")
    # Kept: a new session on a third node sees it in its markers.
    assert wait_until(
        lambda: any(
            m["with"] == "*" and m["upto"] == sent["msg_id"]
            for m in (Session(c, "alice").markers or {"markers": []})["markers"]
        ),
        3,
    )


def test_ones_own_messages_reach_ones_echo_sessions_on_other_nodes(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob")
    bob = Session(c, "bob")
    sender, mirror = Session(a, "alice"), Session(b, "alice")
    plain = Session(c, "alice", features=("rooms",))  # no echo: v1 clarification 8 holds
    # Node a hears of the mirror's session on b through Redis, a moment after its login: a
    # message sent in between is not echoed there (no node can know sooner). Probe until
    # one is, then check the rules on messages sent after.
    for i in range(50):
        ok_sent = sender.ask({"type": "send", "id": 100 + i, "to": ["bob"], "text": f"probe {i}"})
        assert ok_sent["type"] == "sent", ok_sent
        mirror.pump(0.1)
        if any(f["type"] == "msg" for f in mirror.take()):
            break
    else:
        raise AssertionError("node a never learnt of alice's session on node b")
    for to in (["bob"], "*"):
        sent = sender.ask({"type": "send", "id": 1, "to": to, "text": f"to {to}"})
        echoed = mirror.expect("msg", text=f"to {to}")
        assert (echoed["from"], echoed["id"], echoed["to"]) == ("alice", sent["msg_id"], to)
        bob.expect("msg", text=f"to {to}")
    sender.sync()
    plain.pump(0.3)
    assert not sender.take("msg") and not plain.take("msg")


def test_typing_reaches_the_recipients_on_other_nodes_and_never_the_sender(
    three: list[ServerProc],
) -> None:
    a, b, c = three
    people(a, "alice", "bob", "carol")
    alice, bob, carol = Session(a, "alice"), Session(b, "bob"), Session(c, "carol")
    alice_elsewhere = Session(b, "alice")
    alice.c.send({"type": "typing", "to": "bob", "state": "active"})
    got = bob.expect("typing", timeout=1.0)
    assert got == {"type": "typing", "from": "alice", "to": "bob", "state": "active"}
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#t"}))
    ok(carol.ask({"type": "join", "id": 1, "room": "#t"}))
    joined(alice, "#t", "carol")
    for _ in range(5):  # at most 2 a second are relayed
        alice.c.send({"type": "typing", "to": "#t", "state": "active"})
    first = carol.expect("typing", timeout=1.0)
    assert (first["from"], first["to"]) == ("alice", "#t")
    carol.pump(0.5)
    assert len(carol.take("typing")) == 1
    alice_elsewhere.pump(0.2)
    assert not alice_elsewhere.take("typing")  # never the sender's own sessions


def test_user_search_finds_names_registered_on_other_nodes(three: list[ServerProc]) -> None:
    a, b, c = three
    people(a, "alice", "Alfred")
    people(b, "albert", "bob")
    people(c, "carol")
    s = Session(c, "carol")
    found = s.ask({"type": "user_search", "id": 1, "prefix": "AL"})
    assert found["users"] == ["albert", "Alfred", "alice"] and found["more"] is False


# --- restarts, at rest, a frozen Redis ----------------------------------------------------------
def test_rooms_and_markers_survive_a_node_restart_and_the_whole_cluster_restart(
    redis_server: AnyRedis, start_node: Start
) -> None:
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    people(a, "alice", "bob")
    alice, bob = Session(a, "alice"), Session(b, "bob")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#keep", "topic": "kept"}))
    ok(bob.ask({"type": "join", "id": 1, "room": "#keep"}))
    sent = bob.ask({"type": "send", "id": 2, "to": "#keep", "text": "persist"})
    alice.expect("msg", text="persist")
    alice.c.send({"type": "read", "with": "#keep", "upto": sent["msg_id"]})
    alice.sync()
    time.sleep(1.2)  # markers and history may lag by a second (v1.2 section 3)

    def check(node: ServerProc) -> None:
        s = Session(node, "alice")
        assert s.rooms is not None and s.markers is not None
        (room,) = s.rooms["rooms"]
        assert (room["room"], room["topic"], room["members"], room["last"]) == (
            "#keep",
            "kept",
            ["alice", "bob"],
            sent["msg_id"],
        )
        mark = {m["with"]: m for m in s.markers["markers"]}["#keep"]
        assert (mark["upto"], mark["last"], mark["unread"]) == (sent["msg_id"], sent["msg_id"], 0)
        history = s.ask({"type": "history", "id": 9, "with": "#keep", "limit": 5})["messages"]
        assert [m["text"] for m in history] == ["persist"]
        s.close()

    a.stop()
    check(b)
    a2 = start_node(redis_server.url)
    check(a2)
    for node in (a2, b):
        node.stop()
    c = start_node(redis_server.url)
    check(c)
    bob2 = Session(c, "bob")
    assert bob2.markers is not None
    mark = {m["with"]: m for m in bob2.markers["markers"]}["#keep"]
    assert (mark["upto"], mark["unread"]) == (0, 0)  # his own message is not unread


SECRETS = ("#hush-hush", "zanzibar-plan", "quentin", "xavier", "topic-of-secrets", "words-unsaid")


def test_nothing_of_rooms_markers_or_names_is_in_clear_in_redis(
    redis_server: AnyRedis, three: list[ServerProc]
) -> None:
    a, b, _ = three
    people(a, "quentin", "xavier")
    q, x = Session(a, "quentin"), Session(b, "xavier")
    ok(q.ask({"type": "room_create", "id": 1, "room": "#hush-hush", "topic": "zanzibar-plan"}))
    ok(x.ask({"type": "join", "id": 1, "room": "#hush-hush"}))
    ok(q.ask({"type": "topic", "id": 2, "room": "#hush-hush", "topic": "topic-of-secrets"}))
    sent = x.ask({"type": "send", "id": 3, "to": "#hush-hush", "text": "words-unsaid"})
    x.ask({"type": "send", "id": 4, "to": ["quentin"], "text": "words-unsaid"})
    q.c.send({"type": "read", "with": "#hush-hush", "upto": sent["msg_id"]})
    q.c.send({"type": "read", "with": "xavier", "upto": sent["msg_id"] + 1})
    q.sync()
    time.sleep(1.2)
    client = redis_server.client()
    blobs = at_rest(client)
    keys = {k.decode() for k in client.scan_iter(count=1000)}
    kinds = {client.type(k).decode() for k in keys}
    assert any(k.endswith(":room") or ":room:" in k for k in keys)
    assert any(k.endswith(":markers") for k in keys)
    assert any(k.endswith(":contacts") for k in keys) and "set" in kinds and "stream" in kinds
    for blob in blobs:
        for word in SECRETS:
            assert word.encode() not in blob.lower(), f"{word!r} in clear in redis"


def test_a_frozen_redis_answers_room_requests_and_room_sends_within_a_second(
    redis_server: AnyRedis, three: list[ServerProc]
) -> None:
    a, b, _ = three
    people(a, "alice", "bob")
    alice, bob = Session(a, "alice"), Session(b, "bob")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#cold"}))
    ok(bob.ask({"type": "join", "id": 1, "room": "#cold"}))
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        for s, obj in (
            (alice, {"type": "topic", "id": "t", "room": "#cold", "topic": "frozen"}),
            (bob, {"type": "send", "id": "s", "to": "#cold", "text": "anyone?"}),
            (alice, {"type": "room_create", "id": "c", "room": "#new"}),
            (bob, {"type": "send", "id": "s2", "to": "#cold", "text": "again?"}),
        ):
            started = time.monotonic()
            answer = s.ask(obj, timeout=3)
            took = time.monotonic() - started
            err(answer, "rate_limited")
            assert took < 1.0, (obj, took)
            assert "cluster" in answer["message"]
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # Back: the cluster answers again (the link comes back within a probe or two).
    assert wait_until(
        lambda: (
            alice.ask({"type": "topic", "id": "t2", "room": "#cold", "topic": "warm"})["type"]
            == "ok"
        ),
        10,
    )
    assert bob.expect("room_event", event="topic", topic="warm")


# --- a deleted account (v1.2 section 7) ----------------------------------------------------------
def test_a_deleted_account_leaves_its_rooms_on_every_node_and_its_invites_go(
    three: list[ServerProc],
) -> None:
    """The rooms are decided in Redis: the deletion runs there as a room request would, so
    every node's members hear the account leave and ownership pass, and a new account of
    that name finds no membership and no invite of the old one."""
    a, b, c = three
    people(a, "alice", "bob", "carol")
    alice, bob, carol = Session(a, "alice"), Session(b, "bob"), Session(c, "carol")
    ok(alice.ask({"type": "room_create", "id": 1, "room": "#team"}))
    ok(bob.ask({"type": "join", "id": 2, "room": "#team"}))
    joined(alice, "#team", "bob")
    ok(carol.ask({"type": "room_create", "id": 3, "room": "#vault", "invite_only": True}))
    ok(carol.ask({"type": "invite", "id": 4, "room": "#vault", "user": "alice"}))
    alice.expect("room_event", event="invited", room="#vault")
    ok(alice.ask({"type": "delete_account", "id": 5, "password": PASSWORD}))
    left = bob.expect("room_event", event="left", room="#team")
    assert left["user"] == "alice"
    assert bob.expect("room_event", event="owner", room="#team")["user"] == "bob"
    listed = carol.ask({"type": "room_list", "id": 6})["rooms"]
    assert [(r["room"], r["owner"], r["members"]) for r in listed if r["room"] == "#team"] == [
        ("#team", "bob", 1)
    ]
    # The name again, a new account: not a member, not invited, on any node.
    register(c, "alice")
    for node in (a, b, c):
        again = Session(node, "alice")
        frame = again.rooms
        assert frame is not None and frame["rooms"] == [] and frame["invites"] == [], frame
        err(again.ask({"type": "join", "id": 7, "room": "#vault"}), "no_such_room")
        again.close()
