"""Reading comfort (issue "4 of 6"), in tmux against the real server: a colour per nick,
the same in every session and off with NO_COLOR; `/me` as an action that a v1 client
sees as plain text; `/clear`; `/whois`."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import online, register, send_msg
from test_client_linemode_v12 import answer, v12
from test_client_tui import client_args, line_with, next_msg, start_online
from tui_support import Tmux

from chat.client.theme import NICK_COLOURS_256, nick_index

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Tmux]:
    (tmp_path / "other").mkdir()
    t = Tmux(tmp_path / "other")
    yield t
    t.kill()


def coloured(t: Tmux) -> str:
    """The screen with its colours (SGR escape sequences)."""
    return t.tmux("capture-pane", "-e", "-p", "-t", "chat")


def nick_sgr(screen: str, name: str) -> str:
    """The colour sequence right before `name` on its message line."""
    row = next(r for r in screen.splitlines() if f"{name}\x1b" in r and ": " in r)
    found = re.search(r"(\x1b\[[0-9;]*m)" + re.escape(name) + "\x1b", row)
    assert found is not None, repr(row)
    return found.group(1)


def test_a_nick_has_one_colour_in_every_session_and_none_with_no_color(server, tmux, other) -> None:
    register(server, "alice", "dave")
    bob, carol = online(server, "bob"), online(server, "carol")
    tmux.start_client(*client_args(server, "alice"))
    other.start_client(*client_args(server, "dave"))
    for t in (tmux, other):
        t.wait_for(" online | ")
    send_msg(bob, "*", "bob speaking", msg_id=1)
    carol.send({"type": "send", "id": 1, "to": "*", "text": "carol speaking"})
    for t in (tmux, other):
        t.wait_for("carol: carol speaking")
    bob_here, bob_there = nick_sgr(coloured(tmux), "bob"), nick_sgr(coloured(other), "bob")
    assert bob_here == bob_there  # stable across sessions (and runs: a CRC of the name)
    expected = NICK_COLOURS_256[nick_index("bob", len(NICK_COLOURS_256))]
    assert f"38;5;{expected}m" in bob_here
    assert nick_sgr(coloured(tmux), "carol") != bob_here  # these two differ
    # With NO_COLOR: no colour at all (styles only).
    plain = Tmux(other.folder / "nocolor")
    plain.folder.mkdir()
    try:
        plain.start_client(*client_args(server, "erin", "--register"), env=("NO_COLOR=1",))
        plain.wait_for(" online | erin")
        bob.send({"type": "send", "id": 2, "to": "*", "text": "bob again"})
        plain.wait_for("bob: bob again")
        row = line_with(coloured(plain), "bob again")
        assert not re.search(r"\x1b\[([0-9;]*;)?[34][0-8][;m]", row), repr(row)  # 39/49: defaults
        assert "38;5" not in row
    finally:
        plain.kill()


def test_me_is_an_action_here_and_plain_text_for_a_v1_client(server, tmux) -> None:
    bob = online(server, "bob")  # a v1 client: no features asked
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.type("/me waves")
    tmux.keys("Enter")
    msg = next_msg(bob)
    assert msg["text"] == "/me waves"  # the convention: readable as it is
    tmux.wait_for("* alice waves  [delivered: bob]")
    bob.send({"type": "send", "id": 1, "to": "*", "text": "/me waves back"})
    tmux.wait_for("* bob waves back")


def test_clear_empties_the_buffer_on_screen_only(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    send_msg(bob, "*", "something to clear", msg_id=1)
    tmux.wait_for("bob: something to clear")
    tmux.type("/clear")
    tmux.keys("Enter")
    tmux.wait_until(lambda s: "something to clear" not in s and "Welcome" not in s, "emptied")
    send_msg(bob, "*", "after the clear", msg_id=2)
    screen = tmux.wait_for("bob: after the clear")
    assert "something to clear" not in screen


def test_whois_says_online_or_not_registered_and_rooms_in_common(server, tmux) -> None:
    bob = v12(server, "bob")
    register(server, "dave")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev"})
    register(server, "alice")
    answer(bob, {"type": "invite", "id": "i", "room": "#dev", "user": "alice"})
    joiner = v12(server, "alice", register=False)
    answer(joiner, {"type": "join", "id": "j", "room": "#dev"})
    joiner.close()
    start_online(tmux, server, "alice", width=120)
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "hi"})
    tmux.wait_for("2+#dev (1)")
    tmux.type("/whois bob")
    tmux.keys("Enter")
    tmux.wait_for("bob: online, registered", "rooms in common: #dev", "last message seen here:")
    tmux.type("/whois dave")
    tmux.keys("Enter")
    tmux.wait_for("dave: offline, registered")
    tmux.type("/whois nobody")
    tmux.keys("Enter")
    tmux.wait_for("no such user: nobody")
