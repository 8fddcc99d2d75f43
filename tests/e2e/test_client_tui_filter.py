"""The smart filter (issue "4 of 6", finding 4: 33 joins then 33 leaves filled the screen),
in tmux against the real server: joins and leaves of people who have not spoken in the
last 10 minutes add no line, in a room's buffer and in All; `/filter` shows them."""

from __future__ import annotations

import shutil

import pytest
from server_support import online, register, send_msg
from test_client_linemode_v12 import answer, v12
from test_client_tui import start_online
from test_client_tui_attention import history_rows

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def test_50_joins_and_leaves_of_silent_people_add_no_line_to_a_rooms_buffer(server, tmux) -> None:
    bob = v12(server, "bob")
    answer(bob, {"type": "room_create", "id": "c", "room": "#dev"})
    start_online(tmux, server, "alice", "--register", "--join", "#dev", height=40)
    tmux.wait_for("[#dev] >", "you joined #dev")
    bob.send({"type": "send", "id": 1, "to": "#dev", "text": "last word"})
    before = history_rows(tmux.wait_settled("bob: last word"))
    for i in range(50):
        user = v12(server, f"user{i:02d}")
        answer(user, {"type": "join", "id": "j", "room": "#dev"})
        answer(user, {"type": "leave", "id": "l", "room": "#dev"})
        user.close()
    bob.send({"type": "send", "id": 2, "to": "#dev", "text": "after the crowd"})
    after = history_rows(tmux.wait_settled("bob: after the crowd"))
    # Exactly one new line: bob's message; no join, no leave, and the lines above in place
    # (under the buffer's title, the first row).
    assert after[0] == before[0] == "#dev [2 members]"
    assert after[1:-1] == before[2:], after
    assert not any("user" in row for row in after)
    # bob spoke a moment ago: his leave is said.
    answer(bob, {"type": "leave", "id": "l", "room": "#dev"})
    tmux.wait_for("bob left #dev")
    tmux.type("/filter")  # every join and leave
    tmux.keys("Enter")
    tmux.wait_for("smart filter off", "user49 left #dev")


def test_33_people_logging_in_and_out_add_no_line_to_all_unless_they_spoke(server, tmux) -> None:
    register(server, "carol")
    start_online(tmux, server, "alice", "--register", height=40)
    chatty = online(server, "carol", register=False)
    send_msg(chatty, "*", "hello all", msg_id=1)
    before = history_rows(tmux.wait_settled("carol: hello all"))
    people = [online(server, f"x{i:02d}") for i in range(33)]
    tmux.wait_for("| 35 online")
    for person in people:
        person.close()
    tmux.wait_for("| 2 online")
    chatty.close()
    screen = tmux.wait_for("carol left")  # she spoke: her leave is worth a line
    rows = history_rows(screen)
    assert rows[:-1] == before[1:] and "carol left" in rows[-1], rows
    assert not any(" x0" in row or " x1" in row for row in rows)
