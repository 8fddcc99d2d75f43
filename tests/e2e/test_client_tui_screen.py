"""What the TUI's screen says, in tmux against the real server: whole reasons, whole
words, a countdown that is never cut off."""

from __future__ import annotations

import re
import shutil
import socket

import pytest
from server_support import register
from test_client_tui import client_args, line_with, shown_line, start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def popup_text(screen: str) -> str:
    """The words inside the login popup's frame, joined by spaces ("" while the frame is
    not whole on the screen: curses may be caught halfway through drawing it)."""
    rows = screen.splitlines()
    top = next((i for i, row in enumerate(rows) if "┌" in row), None)
    if top is None:
        return ""
    bottom = next((i for i in range(top + 1, len(rows)) if "└" in rows[i]), None)
    if bottom is None:
        return ""
    inner = [row.split("│")[1] for row in rows[top + 1 : bottom] if row.count("│") >= 2]
    return " ".join(" ".join(inner).split())


def test_the_reconnect_countdown_stays_on_the_status_line_at_120_columns(
    start_server, tmux
) -> None:
    server = start_server()
    start_online(tmux, server, "alice", "--register", width=120)
    assert server.stop() == 0
    screen = tmux.wait_re(r"connection refused by 127\.0\.0\.1:\d+", timeout=30)
    status = screen.splitlines()[0]
    assert re.search(r"reconnecting in \d+s", status), status
    assert len(status.rstrip()) <= 120


def test_the_login_form_shows_the_whole_reason(tmux) -> None:
    port = free_port()
    tmux.start_client("--port", str(port), "--user", "alice", "--password", "x")
    screen = tmux.wait_for("Password:", "Server:")
    text = popup_text(tmux.wait_until(lambda s: "refused" in popup_text(s), "the reason"))
    assert f"connection refused by 127.0.0.1:{port} (is chat-server running there?)" in text, screen


def test_a_refused_login_does_not_follow_into_the_register_form(server, tmux) -> None:
    register(server, "alice")
    tmux.start_client(*client_args(server, "alice", password="wrong"))
    tmux.wait_for("login refused", "Password:")
    tmux.keys("Escape")
    tmux.wait_until(lambda s: "Password:" not in s, "the form closed")
    tmux.keys("C-x")
    tmux.wait_for("Register")
    tmux.keys("r")
    # curses may be caught halfway through drawing the popup: wait for its whole frame.
    screen = tmux.wait_settled("Password:", "Register", "┌", "└")
    assert "login refused" not in popup_text(screen)


@pytest.mark.parametrize(("width", "height"), [(25, 5), (14, 5), (29, 3)])
def test_terminal_too_small_is_said_in_whole_words(tmux, width: int, height: int) -> None:
    tmux.start_client()
    tmux.wait_for("^X")
    tmux.resize(width, height)
    screen = tmux.wait_for("Terminal")
    words = screen.split()
    message = f"Terminal too small ({width}x{height}); ^X: menu".split()
    assert words == message[: len(words)], screen
    assert len(words) >= 3
    assert line_with(screen, "Terminal").startswith("Terminal")


def help_line_of(screen: str) -> str:
    return screen.splitlines()[-1]


@pytest.mark.parametrize("key", ["Enter", "Escape", "Left"])
def test_leaving_the_list_puts_the_message_lines_keys_back_on_the_help_line(
    server, tmux, key: str
) -> None:
    start_online(tmux, server, "alice", "--register")
    tmux.keys("C-n")
    tmux.wait_until(lambda s: "list: Up/Down move" in help_line_of(s), "the list's keys")
    tmux.keys(key)
    # Nothing else happens on screen meanwhile: only the focus change can redraw it.
    tmux.wait_until(lambda s: help_line_of(s).startswith(" ^X Menu"), "the message line's keys")
    tmux.type("x")  # and the message line has the focus indeed
    tmux.wait_until(lambda s: shown_line(s, "[all] >").endswith("> x"), "typed text")


@pytest.mark.parametrize("focus_keys", [(), ("C-n",), ("C-n", "C-n")])
def test_the_help_line_keeps_whole_hints_on_a_narrow_terminal(
    server, tmux, focus_keys: tuple[str, ...]
) -> None:
    from chat.client.forms import HINTS

    start_online(tmux, server, "alice", "--register", width=60)
    if focus_keys:
        tmux.keys(*focus_keys)
    focus = {0: "input", 1: "list", 2: "history"}[len(focus_keys)]
    first = HINTS[focus][0][0]
    screen = tmux.wait_settled(first)
    shown = help_line_of(screen).strip().split(" | ")
    assert shown[0] == first
    assert all(hint in [h for h, _ in HINTS[focus]] for hint in shown), shown
    assert len(help_line_of(screen)) <= 59


def test_the_server_going_away_is_one_clear_line(start_server, tmux) -> None:
    server = start_server()
    start_online(tmux, server, "alice", "--register", width=120)
    assert server.stop() == 0
    screen = tmux.wait_re(r"connection refused by 127\.0\.0\.1:\d+", timeout=30)
    history = [line for line in screen.splitlines()[1:-2] if "said bye" in line]
    assert len(history) == 1, screen
    assert re.search(
        r"disconnected: the server said bye \(shutdown\); reconnecting in [1-9]", history[0]
    )
    assert "in 0s" not in screen
