"""Rooms in the TUI (issue "4 of 6" finding 3, issue "3 of 6"), in tmux against the real
server: `/join` (asking before it creates), the topic in the buffer's title, `/topic`,
`/invite`, `/names`, `/kick`, `/part`, the `/rooms` form, a room's messages both ways."""

from __future__ import annotations

import shutil

import pytest
from server_support import register
from test_client_linemode_v12 import answer, v12
from test_client_tui import start_online
from tui_support import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def run(tmux: Tmux, line: str) -> None:
    tmux.type(line)
    tmux.keys("Enter")


def test_join_asks_then_creates_and_topic_invite_names_kick_part_work(server, tmux) -> None:
    bob = v12(server, "bob")
    start_online(tmux, server, "alice", "--register", width=120)
    run(tmux, "/join #dev")
    tmux.wait_for("There is no room #dev. Create it", "Cancel      Create")
    tmux.keys("Escape")  # cancel: nothing is created
    tmux.wait_until(lambda s: "There is no room" not in s, "the question gone")
    bob.send({"type": "room_list", "id": "l"})
    assert bob.recv_type("room_list")["rooms"] == []
    run(tmux, "/join #dev")
    tmux.wait_for("There is no room #dev")
    tmux.keys("Tab", "Enter")  # from Cancel to Create
    tmux.wait_for("[#dev] >", "2>#dev", "created #dev: you own it")
    run(tmux, "/topic ship the buffers")
    tmux.wait_for("#dev [1 member]: ship the buffers", "alice set the topic: ship the buffers")
    run(tmux, "/invite bob")
    tmux.wait_for("invited bob to #dev")
    invited = bob.recv_type("room_event")
    assert (invited["event"], invited["user"], invited["by"]) == ("invited", "bob", "alice")
    answer(bob, {"type": "join", "id": "j", "room": "#dev"})
    tmux.wait_for("#dev [2 members]: ship the buffers", "[ ] bob")
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "hello room"})
    tmux.wait_for("bob: hello room")
    run(tmux, "right back at you")
    msg = bob.recv_type("msg")
    assert (msg["from"], msg["to"], msg["text"]) == ("alice", "#dev", "right back at you")
    tmux.wait_for("alice: right back at you  [sent]")
    run(tmux, "/names")
    tmux.wait_for("#dev: 2 members known", "online (2): alice (owner), bob")
    run(tmux, "/kick bob")
    tmux.wait_for("alice kicked bob from #dev")
    kicked = bob.recv_type("room_event")
    while kicked["event"] != "kicked":
        kicked = bob.recv_type("room_event")
    assert kicked["user"] == "bob"
    run(tmux, "/part")
    tmux.wait_for("you left #dev", "[#dev (not a member)] >")
    run(tmux, "one more")  # not a member any more: said, nothing sent
    tmux.wait_for("not a member of #dev: /join #dev")


def test_the_rooms_form_lists_public_and_invited_rooms_and_enter_joins(server, tmux) -> None:
    register(server, "alice")
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "a", "room": "#open", "topic": "for all"})
    answer(bob, {"type": "room_create", "id": "b", "room": "#secret", "invite_only": True})
    answer(bob, {"type": "room_create", "id": "c", "room": "#hidden", "invite_only": True})
    start_online(tmux, server, "alice", width=120)
    answer(bob, {"type": "invite", "id": "i", "room": "#secret", "user": "alice"})
    tmux.wait_for("bob invited you to #secret (/join #secret)")
    run(tmux, "/rooms")
    screen = tmux.wait_for("#open  (1 member)  for all", "#secret  (1 member, invited")
    assert "#hidden" not in screen  # invite-only and no invite: its existence is not told
    tmux.keys("Down", "Enter")  # the second row: #secret
    tmux.wait_for("[#secret] >", "you joined #secret", "2>#secret")
    bob.send({"type": "send", "id": 1, "to": "#secret", "text": "welcome in"})
    tmux.wait_for("bob: welcome in")


def test_a_rooms_message_counts_in_its_buffer_and_a_mention_rings(server, tmux) -> None:
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "a", "room": "#dev"})
    register(server, "alice")
    answer(bob, {"type": "invite", "id": "i", "room": "#dev", "user": "alice"})
    joiner = v12(server, "alice", register=False)
    answer(joiner, {"type": "join", "id": "j", "room": "#dev"})
    joiner.close()
    start_online(tmux, server, "alice")
    tmux.wait_for("2 #dev")
    mark = len(tmux.output())
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "deploy at five"})
    tmux.wait_for("2+#dev (1)")
    bob.send({"type": "send", "id": 2, "to": "#dev", "text": "alice: can you watch it?"})
    tmux.wait_for("2@#dev (2, @1)")
    assert b"\x07" in tmux.output()[mark:]  # the mention rang, as in All
    tmux.keys("M-2")
    screen = tmux.wait_for("[#dev] >", "bob: alice: can you watch it?")
    assert "#dev (" not in screen


def test_what_is_typed_on_after_join_never_answers_the_question_nor_is_sent(server, tmux) -> None:
    """The question comes with the server's answer, while the user may be typing on: the
    next command's words (`/invite bob` and Enter) must not answer it with their space and
    send the rest to everyone. Only Enter or Escape answer it; the line is dropped."""
    bob = v12(server, "bob")
    start_online(tmux, server, "alice", "--register", width=120)
    run(tmux, "/join #dev")
    tmux.wait_for("There is no room #dev. Create it", "Cancel      Create")
    run(tmux, "/invite bob")  # Enter at the end: Cancel, which has the focus
    tmux.wait_until(lambda s: "There is no room" not in s, "the question gone")
    run(tmux, "the first line meant to be sent")
    msg = bob.recv_type("msg")
    assert msg["text"] == "the first line meant to be sent", msg
    bob.send({"type": "room_list", "id": "l"})
    assert bob.recv_type("room_list")["rooms"] == []


def test_the_chat_behind_a_question_goes_on(server, tmux) -> None:
    """A question left open (the user away) does not freeze the chat under it: what comes
    meanwhile is drawn behind it, and the question stays until it is answered."""
    bob = v12(server, "bob")
    start_online(tmux, server, "alice", "--register", width=120)
    run(tmux, "/join #dev")
    tmux.wait_for("There is no room #dev. Create it")
    bob.send({"type": "send", "id": 1, "to": "*", "text": "said while alice was asked"})
    bob.recv_type("sent")
    tmux.wait_for("bob: said while alice was asked", "There is no room #dev. Create it")
    tmux.keys("Escape")
    tmux.wait_until(lambda s: "There is no room" not in s, "the question gone")
    assert "bob: said while alice was asked" in tmux.screen()
