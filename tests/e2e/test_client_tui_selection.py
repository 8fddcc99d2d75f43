"""The TUI's recipients, in tmux against the real server: they never widen by themselves.

Whoever the prompt names (the buffer on screen) gets the text, and nobody else: a
recipient who leaves, or a reconnect, changes who is online, never whom a message goes to.
"""

from __future__ import annotations

import shutil

import pytest
from server_support import PASSWORD, online, register
from test_client_tui import line_with, no_message_before_pong, start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def test_a_private_message_stays_private_when_its_recipient_leaves_while_typing(
    server, tmux
) -> None:
    """The issue's case: carol writes to bob, bob logs off, Enter: alice must get nothing."""
    alice, bob = online(server, "alice"), online(server, "bob")
    start_online(tmux, server, "carol", "--register", width=150)
    tmux.wait_for("[ ] alice", "[ ] bob")
    tmux.keys("C-n", "Down", "Down", "Enter")  # to the list, down to bob, his buffer
    tmux.wait_for("[bob] >", "[x] bob")
    tmux.type("bob, only for you: the door code is 4711")
    bob.close()
    screen = tmux.wait_for("bob is offline", "[bob (offline)] > bob, only for you")
    assert "[all] >" not in screen and "removed from your selection" not in screen
    assert "[x] bob (offline)" in screen  # still his buffer, shown as offline
    tmux.keys("Enter")
    tmux.wait_for(
        "[private to bob] carol: bob, only for you: the door code is 4711  "
        "[queued for bob (offline)]"
    )
    no_message_before_pong(alice)
    # Bob gets it at his next login, stored for him by the server.
    again = server.client()
    again.login("bob", PASSWORD, register=False)
    frame = again.recv_type("msg")
    assert (frame["to"], frame["text"], frame.get("offline")) == (
        ["bob"],
        "bob, only for you: the door code is 4711",
        True,
    )


def test_a_group_selection_survives_a_reconnect_before_its_members_are_back(
    start_server, tmux
) -> None:
    first = start_server()
    online(first, "bob"), online(first, "carol")
    start_online(tmux, first, "alice", "--register", width=150)
    tmux.wait_for("[ ] bob", "[ ] carol")
    tmux.keys("C-n", "Down", "Space", "Down", "Space", "Escape")
    tmux.wait_for("[bob, carol] >")
    assert first.stop() == 0
    second = start_server(
        "--port", str(first.port), users_file=first.users_file, key_file=first.key_file
    )
    screen = tmux.wait_for("reconnected as alice", " online | alice", timeout=30)
    assert "removed from your selection" not in screen
    assert "[bob (offline), carol (offline)] >" in screen
    bob = online(second, "bob", register=False)
    tmux.wait_for("[bob, carol (offline)] >")
    tmux.type("still both of you")
    tmux.keys("Enter")
    tmux.wait_for(
        "[group: bob, carol] alice: still both of you  "
        "[delivered: bob | queued for carol (offline)]"
    )
    frame = bob.recv_type("msg")
    assert (frame["to"], frame["text"]) == (["bob", "carol"], "still both of you")


def test_query_selects_someone_offline_and_the_list_shows_them_marked(server, tmux) -> None:
    register(server, "dave")
    start_online(tmux, server, "alice", "--register")
    tmux.type("/query dave")
    tmux.keys("Enter")
    screen = tmux.wait_for("[dave (offline)] >", "[x] dave (offline)")
    assert "2>dave" in screen  # its buffer, on screen
    tmux.type("call me")
    tmux.keys("Enter")
    tmux.wait_for("[private to dave] alice: call me  [queued for dave (offline)]")
    tmux.type("/query")  # nobody: back to everyone, said out loud
    tmux.keys("Enter")
    screen = tmux.wait_for("[all] >", "[x] All")
    assert "dave" not in line_with(screen, "[all] >")
