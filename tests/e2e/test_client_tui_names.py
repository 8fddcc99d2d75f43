"""Names on the TUI's screen, in tmux against the real server: names that look alike are
marked wherever they are shown; the list is in natural order; a long name is cut with "…"."""

from __future__ import annotations

import shutil

import pytest
from server_support import online
from test_client_tui import start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def list_column(screen: str) -> list[str]:
    """The participant list's rows (left of the separator), below its title."""
    rows = [line.split("│")[0].rstrip() for line in screen.splitlines()[2:-2] if "│" in line]
    return [row for row in rows if row]


def test_names_that_look_alike_are_marked_in_the_list_the_messages_and_who(server, tmux) -> None:
    """`a1ice` and `alice` (and later `Alice`) are three accounts: each is marked `!`."""
    alice, impostor = online(server, "alice"), online(server, "a1ice")
    start_online(tmux, server, "bob", "--register", width=140)
    screen = tmux.wait_for("[ ] !a1ice", "[ ] !alice")
    assert "look-alike names: alice looks like a1ice; each is marked !" in screen
    impostor.send({"type": "send", "id": 1, "to": "*", "text": "it is me, alice"})
    alice.send({"type": "send", "id": 1, "to": ["bob"], "text": "the real one"})
    tmux.wait_for("!a1ice: it is me, alice", "2@!alice (1)")  # in the list of buffers too
    tmux.keys("M-2")
    screen = tmux.wait_for("[private] !alice: the real one", "[!alice] >")
    third = online(server, "Alice")
    third.send({"type": "send", "id": 1, "to": ["bob", "alice"], "text": "me too"})
    tmux.wait_for("3@!Alice, !alice (1)")
    tmux.keys("M-3")
    tmux.wait_for("[group: bob, !alice] !Alice: me too", "[ ] !Alice")
    tmux.type("/who")
    tmux.keys("Enter")
    screen = tmux.wait_for("look-alike names, each marked !")
    assert "(they differ only in case, 0/o, 1/l/i, 5/s, 2/z, rn/m, vv/w, cl/d):" in screen
    assert "a1ice, Alice, alice" in screen
    assert "online (4): !a1ice, !Alice, !alice, bob" in screen


def test_the_list_is_in_natural_order_and_a_long_name_is_cut_with_an_ellipsis(server, tmux) -> None:
    long = "a_name_of_32_characters_exactly_"
    for name in ("x10", "x2", "x11", "x1", long):
        online(server, name)
    start_online(tmux, server, "bob", "--register")
    screen = tmux.wait_for("[ ] x11", "[ ] x2")
    rows = list_column(screen)
    named = [row[4:] for row in rows if row.startswith("[ ] ")]
    assert named[1:] == ["x1", "x2", "x10", "x11"], rows
    assert named[0].startswith("a_name_of") and named[0].endswith("…"), rows
    assert not any(long in row for row in rows)
    assert "exactly_, x1, x2, x10, x11" in screen  # the login note too
