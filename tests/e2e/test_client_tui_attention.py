"""What calls for the user's attention, in tmux against the real server: the bell, unread
counts, the scrollback that stays put with its new-messages marker, the list while
disconnected, and messages typed offline."""

from __future__ import annotations

import shutil
import time

import pytest
from server_support import PASSWORD, online, send_msg
from test_client_tui import line_with, start_online
from tui_support import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)

BELL = b"\x07"


def history_rows(screen: str) -> list[str]:
    """The history pane's lines (right of the list's border), status and input lines cut."""
    rows = screen.splitlines()[1:-2]
    return [row.split("│", 1)[1] if "│" in row else row for row in rows]


def wait_bytes(tmux: Tmux, since: int, needle: bytes, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in tmux.output()[since:]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_bell_rings_for_a_private_message_and_a_mention_not_for_other_talk(
    server, tmux
) -> None:
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob", "[ ] carol")
    mark = len(tmux.output())
    send_msg(carol, "*", "lunch anyone?", msg_id=1)
    tmux.wait_settled("carol: lunch anyone?")
    assert BELL not in tmux.output()[mark:]
    mark = len(tmux.output())
    bob.send({"type": "send", "id": 2, "to": ["alice"], "text": "psst"})
    assert wait_bytes(tmux, mark, BELL), "no bell for a private message"
    tmux.wait_for("2@bob (1)")  # in bob's buffer, which is marked
    mark = len(tmux.output())
    send_msg(carol, "*", "what does Alice think?", msg_id=3)
    assert wait_bytes(tmux, mark, BELL), "no bell for a mention"


def test_no_bell_when_the_config_file_says_so(server, tmux) -> None:
    folder = tmux.config_home / "chat-client"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("bell = false\n", encoding="utf-8")
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    mark = len(tmux.output())
    send_msg(bob, ["alice"], "psst", msg_id=1)
    tmux.wait_settled("2@bob (1)")
    assert BELL not in tmux.output()[mark:]


def test_unread_counts_per_buffer_until_that_buffer_is_looked_at(server, tmux) -> None:
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob", "[ ] carol")
    send_msg(bob, ["alice"], "one", msg_id=1)
    send_msg(bob, ["alice"], "two", msg_id=2)
    send_msg(carol, ["alice", "carol", "bob"], "group hi", msg_id=3)
    tmux.wait_for("2@bob (2)", "3@bob, carol (1)")
    tmux.keys("C-n", "Down", "Enter")  # bob's buffer from the list: read
    screen = tmux.wait_for("[bob] >", "3@bob, carol (1)")
    assert "bob (2)" not in screen and "2>bob" in screen


def test_scrolled_up_the_view_stays_put_and_a_marker_shows_what_is_new(server, tmux) -> None:
    carol = online(server, "carol")
    start_online(tmux, server, "alice", "--register", height=20)
    for i in range(40):
        send_msg(carol, "*", f"line {i:02d}", msg_id=i)
    tmux.wait_for("carol: line 39")
    tmux.keys("PPage")
    before = history_rows(tmux.wait_settled("more lines below"))
    below = line_with("\n".join(before), "more lines below")
    count = int(below.split("--")[1].split()[0])
    send_msg(carol, "*", "new one", msg_id=100)
    # Two lines more below: the "new messages" marker, then the message.
    after = history_rows(tmux.wait_settled(f"-- {count + 2} more lines below (End) --"))
    assert after[:-1] == before[:-1], "the lines being read moved"
    send_msg(carol, "*", "and another", msg_id=101)
    tmux.wait_settled(f"-- {count + 3} more lines below (End) --")
    tmux.keys("End")  # with an empty message line: back to the newest line
    rows = history_rows(tmux.wait_settled("carol: and another"))
    marker = next(i for i, row in enumerate(rows) if "-- new messages --" in row)
    assert "carol: new one" in rows[marker + 1]
    assert "carol: line 39" in rows[marker - 1]


def test_while_disconnected_the_list_is_marked_and_typed_messages_wait_in_order(
    start_server, tmux
) -> None:
    first = start_server()
    online(first, "bob")
    start_online(tmux, first, "alice", "--register", width=120)
    tmux.wait_for("[ ] bob")
    tmux.keys("C-n", "Down", "Enter")
    tmux.wait_for("[bob] >")
    assert first.stop() == 0
    screen = tmux.wait_settled("reconnecting", "Disconnected")
    assert "Online" not in screen
    for text in ("one", "two", "three"):
        tmux.type(text)
        tmux.keys("Enter")
        tmux.wait_for(f"alice: {text}  [queued until reconnected]")
    second = start_server(
        "--port", str(first.port), users_file=first.users_file, key_file=first.key_file
    )
    # Not `online` (its ping wants the very next frame): alice's client may be back first
    # and her queued messages come to bob before the pong.
    bob = second.client()
    bob.login("bob", PASSWORD, register=False)
    tmux.wait_for("reconnected as alice", timeout=30)
    texts = [bob.recv_type("msg", timeout=30)["text"] for _ in range(3)]
    assert texts == ["one", "two", "three"]
    tmux.wait_settled("Online")
    assert "Disconnected" not in tmux.wait_settled("Online")


def test_counts_go_once_read_stay_gone_at_the_next_login_and_mentions_count(server, tmux) -> None:
    """Finding 5: unread counts stayed after the messages were read; mentions were not
    counted. Read is what was on screen; the server keeps it (read markers), so the next
    login agrees."""
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.type("/query bob")
    tmux.keys("Enter")
    tmux.wait_for("[bob] >")
    send_msg(carol, "*", "lunch?", msg_id=1)
    send_msg(carol, "*", "alice, lunch?", msg_id=2)
    tmux.wait_for("1@All (2, @1)")
    tmux.keys("M-1")
    screen = tmux.wait_for("carol: alice, lunch?", "1>All")
    assert "All (" not in screen
    tmux.keys("M-2")
    screen = tmux.wait_for("[bob] >")
    assert "All (" not in screen  # read stays read
    tmux.keys("C-x")
    tmux.wait_for("Exit")
    tmux.keys("e")
    assert tmux.exit_code() == 0
    again = Tmux(tmux.folder / "again")
    again.folder.mkdir()
    try:
        bob.send({"type": "send", "id": 3, "to": ["alice"], "text": "while you were away"})
        assert bob.recv_type("sent")["queued"] == ["alice"]
        start_online(again, server, "alice")
        screen = again.wait_for("@bob (1)", "1>All")
        assert "All (" not in screen  # read on the last session: not unread now
    finally:
        again.kill()
