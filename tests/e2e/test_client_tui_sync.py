"""One state on every device (issue "4 of 6", findings 5 and 9), in two real terminals
(tmux) against the real server: reading a room on one session clears its unread count
on the other within a second; a message sent from one session shows in the other's
buffer; typing is sent from the message line at most every few seconds and shown in the
status line of the buffer it concerns."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import register
from test_client_linemode_v12 import answer, v12
from test_client_tui import Tmux, client_args, line_with

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Tmux, Tmux]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Tmux(tmp_path / "a"), Tmux(tmp_path / "b")
    yield a, b
    a.kill()
    b.kill()


def member_of_dev(server) -> object:
    """bob owns #dev and alice is in it; bob's connection is returned."""
    register(server, "alice")
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev"})
    answer(bob, {"type": "invite", "id": "i", "room": "#dev", "user": "alice"})
    alice = v12(server, "alice", register=False)
    answer(alice, {"type": "join", "id": "j", "room": "#dev"})
    alice.close()
    return bob


def test_reading_a_room_on_one_session_clears_its_count_on_the_other_within_a_second(
    server, two
) -> None:
    laptop, phone = two
    bob = member_of_dev(server)
    laptop.start_client(*client_args(server, "alice"))
    phone.start_client(*client_args(server, "alice"))
    for t in two:
        t.wait_for(" online | alice", "2 #dev")
    for i in range(3):
        bob.send({"type": "send", "id": i, "to": "#dev", "text": f"news {i}"})
    for t in two:
        t.wait_for("2+#dev (3)")
    phone.keys("M-2")  # read on the phone...
    phone.wait_for("[#dev] >", "bob: news 2")
    start = time.monotonic()
    laptop.wait_until(lambda s: "#dev (3)" not in s and "2 #dev" in s, "the count gone", 1.0)
    assert time.monotonic() - start <= 1.0  # ... gone on the laptop within a second
    # The other way round, and the "new messages" line agrees: the phone is in #dev, the
    # laptop reads All; a new message in #dev is read on the phone at once (on screen).
    bob.send({"type": "send", "id": 9, "to": "#dev", "text": "one more"})
    phone.wait_for("bob: one more")
    laptop.wait_until(lambda s: "#dev (" not in s and "bob: one more" not in s, "no count", 2.0)


def test_a_message_sent_from_one_session_shows_in_the_others_buffer(server, two) -> None:
    """Finding 9: a message sent from one session was not shown in the user's others."""
    laptop, phone = two
    bob = member_of_dev(server)
    laptop.start_client(*client_args(server, "alice"), width=120)
    phone.start_client(*client_args(server, "alice"), width=120)
    for t in two:
        t.wait_for(" online | alice", "2 #dev")
    phone.keys("M-2")
    phone.wait_for("[#dev] >")
    phone.type("sent from the phone")
    phone.keys("Enter")
    assert bob.recv_type("msg")["text"] == "sent from the phone"
    phone.wait_for("alice: sent from the phone  [sent]")
    laptop.wait_for("2 #dev")  # my own message: read, never counted
    laptop.keys("M-2")
    screen = laptop.wait_for("alice: sent from the phone")
    assert "#dev (" not in screen
    phone.type("@bob privately, from the phone")
    phone.keys("Enter")
    laptop.wait_for("3 bob")  # the buffer of that conversation opens on the laptop too
    laptop.keys("M-3")
    laptop.wait_for("[private to bob] alice: privately, from the phone", "[bob] >")


def test_typing_is_sent_at_most_every_few_seconds_and_shown_where_it_concerns(server, two) -> None:
    laptop, _ = two
    register(server, "alice")
    bob = v12(server, "bob")
    laptop.start_client(*client_args(server, "alice"), width=120)
    laptop.wait_for(" online | alice", "[ ] bob")
    laptop.type("/query bob")
    laptop.keys("Enter")
    laptop.wait_for("[bob] >")
    start = time.monotonic()
    for ch in "typing slowly for a while":  # one key every 0.2 s, 5 s in all
        laptop.type(ch)
        time.sleep(0.2)
    laptop.keys("Enter")
    frames = []
    while True:
        frame = bob.recv(timeout=5)
        if frame["type"] == "msg":
            break
        if frame["type"] == "typing":
            frames.append((frame, time.monotonic() - start))
    states = [f["state"] for f, _ in frames]
    assert states[0] == "active" and states[-1] == "done", states
    assert 2 <= states.count("active") <= 3, states  # every 3 s, not every key
    assert frames[0][0] == {"type": "typing", "from": "alice", "to": ["bob"], "state": "active"}
    # Bob types: "bob is typing..." on alice's status line, in bob's buffer only.
    bob.send({"type": "typing", "to": ["alice"], "state": "active"})
    screen = laptop.wait_for("bob is typing...")
    assert "bob is typing..." in line_with(screen, " online | alice")
    laptop.keys("M-1")
    laptop.wait_until(lambda s: "is typing" not in s, "no typing in All")
    laptop.keys("M-2")
    laptop.wait_for("bob is typing...")
    laptop.wait_until(lambda s: "is typing" not in s, "gone after 6 s without news", 8.0)
