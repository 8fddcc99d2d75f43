"""The message line of issue "4 of 6" (findings 6 and 7), in tmux against the real server:
a message of several lines (Alt-Enter, ^J) round-trips; Tab completes commands, offline
names and rooms; Up after ^U starts again from the newest line; `/search` and ^R find
text, fetching older pages; `/query` or `@` of a name nobody has is said at once."""

from __future__ import annotations

import shutil

import pytest
from server_support import online, register, send_msg
from test_client_linemode_v12 import answer, v12
from test_client_tui import (
    line_with,
    next_msg,
    no_message_before_pong,
    shown_line,
    start_online,
)

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def rows_after(screen: str, needle: str, count: int) -> list[str]:
    """The `count` rows below the last row holding `needle` ([] while none does)."""
    rows = screen.splitlines()
    at = [i for i, r in enumerate(rows) if needle in r]
    return rows[at[-1] + 1 : at[-1] + 1 + count] if at else []


def input_line(screen: str) -> str:
    """The message line ("" while it is not on the screen: a wait keeps polling)."""
    return shown_line(screen, "] >")


def test_a_multi_line_message_round_trips(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.type("first line")
    tmux.keys("M-Enter")  # Alt-Enter: a new line, nothing sent
    tmux.type("second line")
    tmux.keys("C-j")  # ^J too
    tmux.type("third")
    # Each check is the wait's condition, not a look at one capture: a capture may catch
    # curses halfway through a redraw (a border half drawn, under four test workers).
    rows = ["        second line", "        third"]
    tmux.wait_until(lambda s: rows_after(s, "[all] > first line", 2) == rows, "three rows")
    no_message_before_pong(bob)
    tmux.keys("Enter")
    assert next_msg(bob)["text"] == "first line\nsecond line\nthird"
    rows = ["         second line", "         third  [delivered: bob]"]
    tmux.wait_until(
        lambda s: [r.partition("│")[2] for r in rows_after(s, "alice: first line", 2)] == rows,
        "the message's rows, delivered",
    )
    tmux.wait_until(lambda s: input_line(s) == "[all] >", "one row again")
    bob.send({"type": "send", "id": 1, "to": "*", "text": "reply\n  indented\nend"})
    tmux.wait_for("bob: reply", "           indented")


def test_tab_completes_commands_offline_names_and_rooms(server, tmux) -> None:
    register(server, "bonnie")  # offline: only the directory knows her
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "c", "room": "#random"})
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.type("/jo")
    tmux.keys("Tab")
    tmux.type("#ran")
    tmux.keys("Tab")
    tmux.type("x")  # (a capture drops trailing spaces: type after them)
    tmux.wait_until(lambda s: input_line(s).endswith("> /join #random x"), "/join #random")
    tmux.keys("C-u")
    tmux.type("thanks bon")
    tmux.keys("Tab")
    tmux.wait_until(lambda s: input_line(s).endswith("> thanks bonnie"), "an offline name")
    tmux.keys("C-u")
    tmux.type("@bon")
    tmux.keys("Tab")
    tmux.type("hi")
    tmux.wait_until(lambda s: input_line(s).endswith("> @bonnie hi"), "after @")
    tmux.keys("Enter")
    tmux.wait_for("2 bonnie", "[private to bonnie] alice: hi  [queued for bonnie (offline)]")


def test_up_after_ctrl_u_starts_again_from_the_newest_line(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    for text in ("one", "two", "three"):
        tmux.type(text)
        tmux.keys("Enter")
        assert next_msg(bob)["text"] == text
    tmux.keys("Up", "Up")
    tmux.wait_until(lambda s: input_line(s).endswith("> two"), "two")
    tmux.keys("C-u")  # changed my mind
    tmux.wait_until(lambda s: input_line(s) == "[all] >", "an empty line")
    tmux.keys("Up")  # from the newest again, not from "one"
    tmux.wait_until(lambda s: input_line(s).endswith("> three"), "three")


def test_search_and_ctrl_r_find_text_fetching_older_pages(server, tmux) -> None:
    carol = online(server, "carol")
    send_msg(carol, "*", "the lunch place is Luigi's", msg_id=0)
    for i in range(1, 80):
        send_msg(carol, "*", f"filler {i:02d}", msg_id=i)
    send_msg(carol, "*", "lunch again tomorrow?", msg_id=99)
    start_online(tmux, server, "alice", "--register", height=20)
    tmux.wait_for("carol: lunch again tomorrow?")
    tmux.type("/search LUNCH")  # the newest match: on screen
    tmux.keys("Enter")
    tmux.wait_for("carol: lunch again tomorrow?")
    tmux.keys("C-r")  # the next older one: not loaded yet, older pages are fetched
    screen = tmux.wait_for("carol: the lunch place is Luigi's", "more lines below")
    assert "lunch again tomorrow" not in screen  # the view jumped to it
    found = tmux.tmux("capture-pane", "-e", "-p", "-t", "chat")
    row = line_with(found, "the lunch place")
    assert "\x1b[1;7m" in row or "\x1b[7m" in row  # marked
    tmux.type("no such words")
    tmux.keys("C-r")
    tmux.wait_for("not found: no such words")


def test_query_or_at_of_a_name_nobody_has_is_said_at_once(server, tmux) -> None:
    """Finding 6: `/query bbo` (a typo) was accepted as if bbo existed, shown offline."""
    bob = online(server, "bob")
    register(server, "dave")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.type("/query bbo")
    tmux.keys("Enter")
    screen = tmux.wait_for("no such user: bbo (did you mean bob?)")
    assert "[all] > /query bbo" in screen  # kept, to be corrected; no buffer opened
    assert "2 bbo" not in screen
    tmux.keys("C-u")
    tmux.type("@bbo are you there")
    tmux.keys("Enter")
    tmux.wait_until(
        lambda s: "[all] > @bbo are you there" in s and s.count("no such user: bbo") == 2,
        "said again, the line kept",
    )
    no_message_before_pong(bob)
    tmux.keys("C-u")
    tmux.type("/query dave")  # offline, registered: his buffer, marked offline
    tmux.keys("Enter")
    tmux.wait_for("[dave (offline)] >", "2>dave")
