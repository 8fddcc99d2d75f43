"""Messaging rules: "*", one name, groups, missing names, ids, ts, per-sender order."""

from __future__ import annotations

import json
import threading
import time
from itertools import pairwise
from typing import Any

from server_support import (
    PASSWORD,
    messages,
    online,
    raw_client,
    register,
    request,
    roster_changes,
    send_msg,
    ts_literal,
)

from wire import WireClient, frame


def _room(server, *names: str) -> dict[str, WireClient]:
    """Everyone online, in CHAT, with every join delta read and acked."""
    clients: dict[str, WireClient] = {}
    for name in names:
        clients[name] = online(server, name)
        for earlier in list(clients)[:-1]:
            roster_changes(clients[earlier], join=[name])
    return clients


def _msg_fields_ok(m: dict[str, Any], sender: str, to: Any, text: str) -> None:
    assert m["type"] == "msg", m
    assert m["from"] == sender and m["to"] == to and m["text"] == text, m
    assert isinstance(m["id"], int) and not isinstance(m["id"], bool), m
    assert isinstance(m["ts"], float), m


def test_star_reaches_every_other_user_in_chat_and_not_the_sender(server) -> None:
    room = _room(server, "alice", "bob", "carol")
    sent = send_msg(room["alice"], "*", "hello all")
    assert sorted(sent["delivered"]) == ["bob", "carol"] and sent["missing"] == []
    for name in ("bob", "carol"):
        _msg_fields_ok(messages(room[name], 1)[0], "alice", "*", "hello all")
    assert room["alice"].silent(0.2)


def test_star_skips_connections_in_auth_and_roster(server) -> None:
    room = _room(server, "alice", "bob")
    in_auth = server.client()
    in_roster = server.client()
    in_roster.send({"type": "auth", "user": "dave", "password": PASSWORD, "register": True})
    assert in_roster.recv()["type"] == "auth_ok" and in_roster.recv()["type"] == "roster"
    sent = send_msg(room["alice"], "*", "hi")
    assert sent["delivered"] == ["bob"] and sent["missing"] == []
    assert messages(room["bob"], 1)[0]["text"] == "hi"
    assert in_auth.silent(0.2) and in_roster.silent(0.2)


def test_star_with_nobody_else_online_delivers_to_nobody(server) -> None:
    alice = online(server, "alice")
    sent = send_msg(alice, "*", "anyone?")
    assert sent["delivered"] == [] and sent["missing"] == []
    assert alice.silent(0.2)


def test_a_list_of_one_reaches_that_user_only(server) -> None:
    room = _room(server, "alice", "bob", "carol")
    sent = send_msg(room["alice"], ["bob"], "just you")
    assert sent["delivered"] == ["bob"] and sent["missing"] == []
    _msg_fields_ok(messages(room["bob"], 1)[0], "alice", ["bob"], "just you")
    assert room["carol"].silent(0.2) and room["alice"].silent(0.1)


def test_a_group_reaches_the_named_users_only(server) -> None:
    room = _room(server, "alice", "bob", "carol", "dave")
    sent = send_msg(room["alice"], ["carol", "bob"], "you two")
    assert sorted(sent["delivered"]) == ["bob", "carol"] and sent["missing"] == []
    for name in ("bob", "carol"):
        _msg_fields_ok(messages(room[name], 1)[0], "alice", ["carol", "bob"], "you two")
    assert room["dave"].silent(0.2)


def test_named_users_not_online_are_missing(server) -> None:
    register(server, "dave")  # an account, offline
    room = _room(server, "alice", "bob")
    sent = send_msg(room["alice"], ["bob", "ghost", "dave"], "who is here")
    assert sent["delivered"] == ["bob"]
    assert sorted(sent["missing"]) == ["dave", "ghost"]
    assert messages(room["bob"], 1)[0]["text"] == "who is here"


def test_a_user_still_in_roster_state_is_missing(server) -> None:
    alice = online(server, "alice")
    dave = server.client()
    dave.send({"type": "auth", "user": "dave", "password": PASSWORD, "register": True})
    assert dave.recv()["type"] == "auth_ok" and dave.recv()["type"] == "roster"
    sent = send_msg(alice, ["dave"], "too early")
    assert sent["delivered"] == [] and sent["missing"] == ["dave"]
    assert dave.silent(0.2)


def test_only_missing_names_deliver_to_nobody(server) -> None:
    alice = online(server, "alice")
    sent = send_msg(alice, ["ghost"], "hello?")
    assert sent["delivered"] == [] and sent["missing"] == ["ghost"]


def test_own_name_in_a_list_is_ignored(server) -> None:
    room = _room(server, "alice", "bob")
    sent = send_msg(room["alice"], ["alice", "bob"], "me and you")
    assert sent["delivered"] == ["bob"] and sent["missing"] == []
    assert messages(room["bob"], 1)[0]["to"] == ["alice", "bob"]
    assert room["alice"].silent(0.2)


def test_own_name_alone_delivers_to_nobody_and_is_not_missing(server) -> None:
    alice = online(server, "alice")
    sent = send_msg(alice, ["alice"], "note to self")
    assert sent["delivered"] == [] and sent["missing"] == []
    assert alice.silent(0.2)


def test_msg_to_is_exactly_the_list_as_sent(server) -> None:
    room = _room(server, "alice", "bob", "carol")
    to = ["carol", "ghost", "alice", "bob"]
    send_msg(room["alice"], to, "order kept")
    assert messages(room["bob"], 1)[0]["to"] == to
    assert messages(room["carol"], 1)[0]["to"] == to


def test_msg_to_keeps_duplicates_and_delivered_names_each_user_once(server) -> None:
    room = _room(server, "alice", "bob")
    to = ["bob", "bob", "ghost", "ghost"]
    sent = send_msg(room["alice"], to, "twice?")
    assert sent["delivered"] == ["bob"] and set(sent["missing"]) == {"ghost"}
    got = messages(room["bob"], 1)
    assert got[0]["to"] == to
    assert room["bob"].silent(0.2), "a duplicate name must not deliver twice"


def test_sent_echoes_the_id_and_the_recipient_already_has_it_queued(server) -> None:
    room = _room(server, "alice", "bob")
    answer = request(room["alice"], {"type": "send", "id": 99, "to": ["bob"], "text": "q"})
    assert answer["type"] == "sent" and answer["id"] == 99, answer
    assert answer["delivered"] == ["bob"] and answer["missing"] == [], answer
    assert messages(room["bob"], 1, timeout=2)[0]["text"] == "q"


def test_a_message_answered_by_sent_arrives_even_if_the_sender_leaves_at_once(server) -> None:
    room = _room(server, "alice", "bob")
    send_msg(room["alice"], ["bob"], "parting words")
    room["alice"].close()
    assert messages(room["bob"], 1)[0]["text"] == "parting words"


def test_msg_ids_increase_per_sender_at_each_recipient(server) -> None:
    room = _room(server, "alice", "bob", "carol")
    carol_got = []
    for i in range(10):
        send_msg(room["alice"], "*", f"a{i}", msg_id=i)
        carol_got += messages(room["carol"], 1)
        send_msg(room["carol"], ["bob"], f"c{i}", msg_id=i)
    got = messages(room["bob"], 20)
    for sender in ("alice", "carol"):
        ids = [m["id"] for m in got if m["from"] == sender]
        assert len(ids) == 10 and all(a < b for a, b in pairwise(ids)), ids
    ids = [m["id"] for m in carol_got]
    assert all(a < b for a, b in pairwise(ids)), ids


def test_msg_ts_is_a_float_literal_near_now(server) -> None:
    bob = raw_client(server)
    bob.login("bob", PASSWORD)
    assert request(bob, {"type": "ping"}) == {"type": "pong"}
    alice = online(server, "alice")
    roster = bob.recv()
    bob.send({"type": "roster_ack", "seq": roster["seq"]})
    for i in range(5):
        before = time.time()
        send_msg(alice, ["bob"], f"when {i}")
        payload = bob.recv_payload()
        obj = json.loads(payload)
        assert obj["type"] == "msg", obj
        literal = ts_literal(payload)
        assert "." in literal or "e" in literal.lower(), payload
        assert isinstance(obj["ts"], float)
        assert before - 60 < obj["ts"] < time.time() + 60


def test_a_message_to_oneself_never_comes_back(server) -> None:
    alice = online(server, "alice")
    send_msg(alice, "*", "echo?")
    send_msg(alice, ["alice"], "echo?")
    assert alice.silent(0.3)


# ---- per-sender order under load --------------------------------------------

SENDERS = 4
PER_SENDER = 300


def _pump(client: WireClient, name: str, want_msgs: int, out: dict[str, Any]) -> None:
    """Send PER_SENDER messages to "*" in small batches, then read every answer."""
    try:
        for start in range(0, PER_SENDER, 25):
            client.send_raw(
                b"".join(
                    frame({"type": "send", "id": i, "to": "*", "text": f"{name}:{i}"})
                    for i in range(start, start + 25)
                )
            )
        out[name] = _drain(client, want_msgs, PER_SENDER)
    except BaseException as exc:  # reported by the main thread
        out[name] = exc


def _listen(client: WireClient, name: str, want_msgs: int, out: dict[str, Any]) -> None:
    try:
        out[name] = _drain(client, want_msgs, 0)
    except BaseException as exc:
        out[name] = exc


def _drain(client: WireClient, want_msgs: int, want_sent: int) -> dict[str, list]:
    got: dict[str, list] = {"msg": [], "sent": [], "other": []}
    deadline = time.monotonic() + 60
    while len(got["msg"]) < want_msgs or len(got["sent"]) < want_sent:
        f = client.recv(max(deadline - time.monotonic(), 0.01))
        if f["type"] == "roster":
            client.send({"type": "roster_ack", "seq": f["seq"]})
            got["other"].append(f)
        else:
            got.get(f["type"], got["other"]).append(f)
    return got


def test_per_sender_order_holds_with_four_threads_and_concurrent_senders(start_server) -> None:
    server = start_server("--threads", "4", "--rate-limit", "0")
    senders = [f"s{i}" for i in range(SENDERS)]
    listeners = ["l0", "l1"]
    room = _room(server, *senders, *listeners)
    out: dict[str, Any] = {}
    threads = [
        threading.Thread(target=_pump, args=(room[n], n, (SENDERS - 1) * PER_SENDER, out))
        for n in senders
    ]
    threads += [
        threading.Thread(target=_listen, args=(room[n], n, SENDERS * PER_SENDER, out))
        for n in listeners
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for name, result in out.items():
        assert not isinstance(result, BaseException), f"{name}: {result!r}"
    assert len(out) == len(room)
    for name, got in out.items():
        assert got["other"] == [], f"{name} got unexpected frames: {got['other'][:3]}"
        for sender in senders:
            if sender == name:
                continue
            texts = [m["text"] for m in got["msg"] if m["from"] == sender]
            assert texts == [f"{sender}:{i}" for i in range(PER_SENDER)], (
                f"{name} saw {sender}'s messages out of order, lost or doubled"
            )
            ids = [m["id"] for m in got["msg"] if m["from"] == sender]
            assert all(a < b for a, b in pairwise(ids)), ids
        assert not any(m["from"] == name for m in got["msg"]), "a sender got its own message"
    for sender in senders:
        sent = out[sender]["sent"]
        assert [s["id"] for s in sent] == list(range(PER_SENDER))
        everyone_else = sorted(n for n in room if n != sender)
        assert all(sorted(s["delivered"]) == everyone_else for s in sent)
    for name in room:
        assert room[name].silent(0.2), f"{name} got more than expected"
