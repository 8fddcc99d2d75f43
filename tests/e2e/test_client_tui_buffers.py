"""Buffers in the TUI (issue "4 of 6", findings 1 and 2), in tmux against the real server:
one buffer per conversation, the one on screen is who receives what is typed, a private
message opens (or marks) its buffer and never changes the recipient; Alt-1..9,
Alt-Left/Right, F5/F6, `/buffer`, the buffer list, `^O`; `/close` keeps the conversation
on the server; the participant list shows the buffer's people."""

from __future__ import annotations

import shutil

import pytest
from server_support import online, register, send_msg
from test_client_linemode_v12 import answer, v12
from test_client_tui import line_with, next_msg, no_message_before_pong, start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def prompt(screen: str) -> str:
    return line_with(screen, "] >").split("] >")[0] + "]"


def test_a_private_message_while_all_is_current_does_not_change_the_recipient(server, tmux) -> None:
    """Finding 1: an incoming private message left the prompt at `[all] >`, so "sure"
    answered everyone. Now it opens bob's buffer; the prompt still says where a line goes,
    and Alt-2 is the reply context."""
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob", "[ ] carol")
    bob.send({"type": "send", "id": 1, "to": ["alice"], "text": "lunch at noon?"})
    screen = tmux.wait_for("2@bob (1)")
    assert prompt(screen) == "[all]" and "lunch at noon?" not in screen  # not in All
    tmux.type("sure")  # typed in All: to everyone, as the prompt says
    tmux.keys("Enter")
    assert next_msg(carol)["to"] == "*"
    tmux.keys("M-2")  # bob's buffer: the reply context
    screen = tmux.wait_for("[private] bob: lunch at noon?", "[bob] >", "2>bob")
    tmux.type("sure, see you there")
    tmux.keys("Enter")
    msg = next_msg(bob)
    while msg["to"] == "*":  # the earlier "sure" to everyone
        msg = next_msg(bob)
    assert (msg["to"], msg["text"]) == (["bob"], "sure, see you there")
    no_message_before_pong(carol)
    # Another private message while bob's buffer is on screen: read there, no count.
    bob.send({"type": "send", "id": 2, "to": ["alice"], "text": "great"})
    screen = tmux.wait_for("[private] bob: great")
    assert "bob (1)" not in screen and prompt(screen) == "[bob]"


def test_buffers_switch_with_alt_digits_alt_arrows_f5_f6_buffer_and_the_list(server, tmux) -> None:
    """Finding 2: one view for everything; now a buffer per conversation and the keys of
    WeeChat and irssi to move between them."""
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    send_msg(bob, ["alice"], "from bob", msg_id=1)
    send_msg(carol, ["alice"], "from carol", msg_id=1)
    tmux.wait_for("2@bob (1)", "3@carol (1)")
    tmux.keys("M-3")
    tmux.wait_for("[carol] >", "[private] carol: from carol")
    tmux.keys("M-Left")
    tmux.wait_for("[bob] >", "[private] bob: from bob")
    tmux.keys("M-Right")
    tmux.wait_for("[carol] >")
    tmux.keys("F5")
    tmux.wait_for("[bob] >")
    tmux.keys("F6")
    tmux.wait_for("[carol] >")
    tmux.keys("M-Right")  # round the end: All
    tmux.wait_for("[all] >", "1>All")
    tmux.type("/buffer carol")
    tmux.keys("Enter")
    tmux.wait_for("[carol] >")
    tmux.keys("C-o")  # the buffer shown before
    tmux.wait_for("[all] >")
    tmux.keys("C-n", "C-n", "C-n")  # people, history, then the buffer list
    tmux.wait_for("buffers: Up/Down move")
    tmux.keys("Down", "Enter")
    tmux.wait_for("[bob] >", "^X Menu")  # and back on the message line


def test_close_keeps_the_conversation_on_the_server(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    send_msg(bob, ["alice"], "remember this", msg_id=1)
    tmux.wait_for("2@bob (1)")
    tmux.keys("M-2")
    tmux.wait_for("[private] bob: remember this")
    tmux.type("/close")
    tmux.keys("Enter")
    screen = tmux.wait_for("[all] >")
    assert "bob (" not in screen and "2 bob" not in screen and "2>bob" not in screen
    tmux.type("/query bob")
    tmux.keys("Enter")
    tmux.wait_for("[bob] >", "[private] bob: remember this")  # from the server's history


def test_the_participant_list_shows_the_buffers_people_online_first(server, tmux) -> None:
    register(server, "dave")
    bob = v12(server, "bob")
    online(server, "erin")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev"})
    dave = v12(server, "dave", register=False)
    answer(dave, {"type": "join", "id": "j", "room": "#dev"})
    dave.close()
    register(server, "alice")
    answer(bob, {"type": "invite", "id": "i", "room": "#dev", "user": "alice"})
    joiner = v12(server, "alice", register=False)
    answer(joiner, {"type": "join", "id": "j", "room": "#dev"})
    joiner.close()
    start_online(tmux, server, "alice")
    screen = tmux.wait_for("[ ] bob", "[ ] erin", "2 #dev")
    assert "dave" not in screen  # in All: everyone online, dave is not
    tmux.keys("M-2")
    screen = tmux.wait_for("[x] #dev", "[ ] dave (offline)")
    rows = [line.split("│")[0].strip() for line in screen.splitlines()[2:6]]
    assert rows == ["[x] #dev", "[ ] bob", "[ ] dave (offline)", ""], rows  # erin: not a member
