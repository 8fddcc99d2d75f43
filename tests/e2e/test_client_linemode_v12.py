"""`chat-client --no-tui` and protocol v1.2, end to end: real client processes against the
real server (issue "3 of 6", line mode; issue "4 of 6", line-mode items): `@#room text`,
`--join`, the v1.2 notices in `--json`, `--history --with '#room'`, `--reconnect`, every
failure in the JSON stream, queued and missing apart, messages of several lines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from server_support import PASSWORD, register, roster_changes
from test_client_linemode import LineClient, clients  # noqa: F401 (a fixture)

FEATURES = ["rooms", "read", "echo", "typing"]


def v12(server: Any, name: str, *, register: bool = True, features: list[str] = FEATURES) -> Any:
    """A raw connection logged in as `name` with v1.2 features, in CHAT, its login's
    `rooms` and `markers` frames read (a ping's pong comes after them)."""
    c = server.client()
    c.send({"type": "auth", "user": name, "password": PASSWORD, "register": register,
            "features": features})  # fmt: skip
    ok = c.recv()
    assert ok["type"] == "auth_ok", ok
    roster = c.recv()
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    c.send({"type": "ping"})
    c.recv_type("pong")
    return c


def answer(c: Any, frame: dict[str, Any], kind: str = "ok") -> dict[str, Any]:
    c.send(frame)
    got = c.recv_type(kind)
    assert got.get("id") == frame.get("id"), got
    return got


def objects(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_join_creates_a_missing_room_then_at_room_writes_to_it(server, clients) -> None:  # noqa: F811
    bob = v12(server, "bob")
    alice = clients(server, "alice", "--register", "--join", "#dev")
    alice.write("@#dev hello room")  # read at once: waits for the join (and its creation)
    alice.wait_for(r"\* created #dev$")
    alice.wait_for(r"> #1 sent to #dev$")
    answer(bob, {"type": "join", "id": "j1", "room": "#dev"})
    alice.wait_for(r"\* bob joined #dev$")
    alice.write("@#dev second")
    msg = bob.recv_type("msg")
    assert (msg["from"], msg["to"], msg["text"]) == ("alice", "#dev", "second")
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "hi alice"})
    alice.wait_for(r"<bob> \[#dev\] hi alice$")
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 0, err
    # The first line went once the room existed: it is in the room's history.
    page = answer(bob, {"type": "history", "id": "h", "with": "#dev"}, "history")
    assert [m["text"] for m in page["messages"]] == ["hello room", "second", "hi alice"]


def test_join_of_an_existing_room_and_json_prints_the_v12_notices(server, clients) -> None:  # noqa: F811
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev", "topic": "plans"})
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "before alice came"})
    bob.recv_type("sent")
    alice = clients(server, "alice", "--register", "--json", "--join", "#dev")
    ok = json.loads(alice.wait_for(r'"event": "ok"'))
    assert (ok["request"], ok["room"]) == ("join", "#dev")
    # Another session of alice reads the room: alice's line mode hears of it.
    phone = v12(server, "alice", register=False)
    phone.send({"type": "read", "with": "#dev", "upto": 1})
    read = json.loads(alice.wait_for(r'"event": "read"'))
    assert (read["with"], read["upto"]) == ("#dev", 1)
    bob.send({"type": "send", "id": 2, "to": "#dev", "text": "welcome"})
    msg = json.loads(alice.wait_for(r'"text": "welcome"'))
    assert (msg["event"], msg["from"], msg["to"]) == ("msg", "bob", "#dev")
    bob.send({"type": "typing", "to": "#dev", "state": "active"})
    typing = json.loads(alice.wait_for(r'"event": "typing"'))
    assert typing == {"event": "typing", "from": "bob", "to": "#dev", "state": "active"}
    answer(bob, {"type": "topic", "id": "t", "room": "#dev", "topic": "ship it"})
    event = json.loads(alice.wait_for(r'"kind": "topic"'))
    assert event["event"] == "room_event"
    assert (event["room"], event["user"], event["by"], event["topic"]) == (
        "#dev",
        "bob",
        "bob",
        "ship it",
    )
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 0, err
    # At the next login: the rooms frame and the markers, as JSON lines.
    again = clients(server, "alice", "--json")
    rooms = json.loads(again.wait_for(r'"event": "rooms"'))
    (dev,) = rooms["rooms"]
    assert (dev["room"], dev["topic"], dev["owner"], dev["members"]) == (
        "#dev",
        "ship it",
        "bob",
        ["alice", "bob"],
    )
    markers = json.loads(again.wait_for(r'"event": "markers"'))
    (dev_marker,) = [k for k in markers["markers"] if k["with"] == "#dev"]
    assert (dev_marker["upto"], dev_marker["unread"]) == (1, 1)  # "welcome" is not read
    again.end_input()
    assert again.finish()[0] == 0


def test_history_with_a_room_prints_the_rooms_messages(server, clients) -> None:  # noqa: F811
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev"})
    for i in range(5):
        bob.send({"type": "send", "id": i, "to": "#dev", "text": f"room {i}"})
        bob.recv_type("sent")
    register(server, "alice")
    answer(bob, {"type": "invite", "id": "i", "room": "#dev", "user": "alice"})
    joiner = v12(server, "alice", register=False)
    answer(joiner, {"type": "join", "id": "j", "room": "#dev"})
    c = clients(server, "alice", "--history", "3", "--with", "#dev")
    rc, out, err = c.finish()
    assert (rc, err) == (0, "")
    assert [line.split("> ", 1)[1] for line in out] == [
        "[#dev] room 2",
        "[#dev] room 3",
        "[#dev] room 4",
    ]
    # Not a member (of a public room): the server's refusal, exit 5.
    outsider = clients(server, "carol", "--register", "--history", "3", "--with", "#dev")
    rc, out, err = outsider.finish()
    assert rc == 5 and out[0].endswith(" ! not_member: you are not a member of that room"), out


def test_reconnect_logs_in_again_and_sends_what_was_written_meanwhile(
    start_server,
    clients,  # noqa: F811
) -> None:
    first = start_server()
    register(first, "bob")
    alice = clients(first, "alice", "--register", "--reconnect", "--json")
    alice.wait_for(r'"event": "online"')
    assert first.stop() == 0
    gone = json.loads(alice.wait_for(r'"event": "disconnected"'))
    assert gone["reason"] == "the server said bye (shutdown)" and gone["retry_in"] > 0
    alice.write("@bob written while the server was away")
    second = start_server(
        "--port", str(first.port), users_file=first.users_file, key_file=first.key_file
    )
    # Bob logs in while alice's client waits out its backoff, or after it is back (then the
    # message waits in bob's offline queue and comes with his login): either way it comes.
    bob = second.client()
    bob.send({"type": "auth", "user": "bob", "password": PASSWORD, "features": FEATURES})
    texts: list[str] = []
    deadline = time.monotonic() + 45  # the client's backoff is at most 15 s
    while "written while the server was away" not in texts:
        frame = bob.recv(max(deadline - time.monotonic(), 0.01))
        if frame["type"] == "roster":
            bob.send({"type": "roster_ack", "seq": frame["seq"]})
        elif frame["type"] == "msg":
            texts.append(frame["text"])
    assert texts == ["written while the server was away"]
    alice.end_input()
    rc, out, err = alice.finish(timeout=30)
    assert rc == 0, err
    events = [o["event"] for o in objects(out)]
    assert events.count("online") == 2  # the login, and the one after the restart
    assert err == ""


def test_without_reconnect_the_loss_is_a_fatal_object_in_the_json_stream(server, clients) -> None:  # noqa: F811
    alice = clients(server, "alice", "--register", "--json")
    alice.wait_for(r'"event": "online"')
    assert server.stop() == 0
    rc, out, err = alice.finish()
    assert rc == 4
    assert objects(out)[-1] == {
        "event": "fatal",
        "message": "disconnected: the server said bye (shutdown)",
        "exit": 4,
    }
    assert err.strip() == "chat-client: disconnected: the server said bye (shutdown)"


def test_every_failure_on_stderr_is_also_an_object_in_the_json_stream(server, clients) -> None:  # noqa: F811
    register(server, "alice")
    wrong = clients(server, "alice", "--json", password="wrong password")
    rc, out, err = wrong.finish()
    assert rc == 3
    (obj,) = objects(out)
    assert obj["event"] == "fatal" and obj["exit"] == 3
    assert obj["message"] in err
    proc = subprocess.run(
        [sys.executable, "-m", "chat.client", "--json", "--user", "a", "--join", "nohash"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {
        "event": "fatal",
        "message": "--join 'nohash' is not a room name (# then a user name)",
        "exit": 2,
    }
    # A line to a room that is not a room, refused before it goes: a local_error.
    alice = clients(server, "alice", "--json")
    alice.write("@#bad! text")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 5
    assert {"event": "local_error", "line": 1, "message": "not a valid room name: '#bad!'"} in (
        objects(out)
    )


def test_json_sent_tells_queued_from_unknown(server, clients) -> None:  # noqa: F811
    register(server, "dave")
    alice = clients(server, "alice", "--register", "--json")
    alice.write("@dave,ghost hello")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    (sent,) = [o for o in objects(out) if o["event"] == "sent"]
    assert (sent["missing"], sent["queued"], sent["unknown"]) == (
        ["dave", "ghost"],
        ["dave"],
        ["ghost"],
    )
    assert isinstance(sent["msg_id"], int)


def test_a_message_of_several_lines_is_printed_indented_under_its_first(server, clients) -> None:  # noqa: F811
    bob = v12(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.wait_for(r"\* online")
    roster_changes(bob, join=["alice"])  # in CHAT: not a message kept for her while offline
    bob.send({"type": "send", "id": 1, "to": ["alice"], "text": "line one\nline two\nthree"})
    first = alice.wait_for(r"<bob> \[private\] line one$")
    index = alice.seen.index(first)
    alice.wait_for(r"^ +three$")
    assert alice.seen[index + 1 : index + 3] == [" " * 9 + "line two", " " * 9 + "three"]
    alice.end_input()
    assert alice.finish()[0] == 0


def test_a_message_from_another_session_of_mine_is_printed(server, clients) -> None:  # noqa: F811
    bob = v12(server, "bob")
    alice = clients(server, "alice", "--register", "--json")
    alice.wait_for(r'"event": "online"')
    # "online" is printed when the roster comes, before the server has read its ack: an
    # echo sent in between would find no session of alice in CHAT (it flaked under load).
    # Bob hearing her join says her session is in CHAT.
    roster_changes(bob, join=["alice"])
    phone = v12(server, "alice", register=False)
    phone.send({"type": "send", "id": 1, "to": ["bob"], "text": "from my phone"})
    echo = json.loads(alice.wait_for(r'"text": "from my phone"'))
    assert (echo["from"], echo["to"]) == ("alice", ["bob"])
    alice.end_input()
    assert alice.finish()[0] == 0


def test_lines_wait_for_the_join_so_a_room_line_is_never_refused(server, clients) -> None:  # noqa: F811
    """Ten lines written before the login, the first to the room --join creates."""
    alice = clients(server, "alice", "--register", "--join", "#ops", "--join", "#dev")
    alice.write(*[f"@#ops line {i}" for i in range(10)])
    alice.end_input()
    start = time.monotonic()
    rc, out, err = alice.finish()
    assert rc == 0, (out, err)
    assert sum("sent to #ops" in line for line in out) == 10
    assert time.monotonic() - start < 15
