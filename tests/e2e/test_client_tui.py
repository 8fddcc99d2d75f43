"""The npyscreen TUI driven in tmux (a real pseudo-terminal) against the real server.

Every wait polls `capture-pane` until a deadline, so the tests don't depend
on timing; the other side of each conversation is a raw-protocol WireClient.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from server_support import PASSWORD, next_frame, online, register, send_msg
from tui_support import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def client_args(server: Any, user: str, *extra: str, password: str = PASSWORD) -> list[str]:
    return [
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--user",
        user,
        "--password",
        password,
        *extra,
    ]


def log_in_from_the_menu(tmux: Tmux, key: str, user: str, password: str = PASSWORD) -> None:
    """^X opens the menu, the shortcut opens the form; the user and password typed in it
    (for a client started without --user); the Register form asks for the password twice."""
    tmux.wait_for("^X Menu", "offline")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Register", "Exit")
    tmux.keys(key)
    tmux.wait_for("Password:", "Server:")
    tmux.type(user)  # the form opens on the empty user field
    tmux.keys("Down")
    tmux.type(password)
    tmux.keys("Enter")
    if key == "r":
        tmux.type(password)
        tmux.keys("Enter")


def start_online(tmux: Tmux, server: Any, user: str, *extra: str, **kw: Any) -> str:
    """Start a client with credentials on the command line; the screen once it is online."""
    tmux.start_client(*client_args(server, user, *extra), **kw)
    return tmux.wait_for(f" online | {user} @")


def line_with(screen: str, needle: str) -> str:
    """The first line of `screen` that holds `needle` (a test failure when none does)."""
    line = shown_line(screen, needle)
    assert line, f"no line with {needle!r} on the screen:\n{screen}"
    return line


def shown_line(screen: str, needle: str) -> str:
    """The first line of `screen` that holds `needle`, "" when none does (yet): for the
    checks of a wait, which then keeps polling. The client may not have drawn what was
    typed or pasted yet (a loaded machine), or a capture may catch curses halfway through
    a redraw; a check that raised there (StopIteration, from `next`) ended the wait at its
    first look, which is how the paste and Tab tests failed now and then under load."""
    return next((line for line in screen.splitlines() if needle in line), "")


def next_msg(client: Any) -> dict[str, Any]:
    """The next `msg` frame (roster deltas acked, `sent` answers skipped)."""
    while (frame := next_frame(client))["type"] != "msg":
        assert frame["type"] == "sent", frame
    return frame


def no_message_before_pong(client: Any) -> None:
    """Nothing was sent to `client`: a ping's pong comes before any `msg` (frames in order)."""
    client.send({"type": "ping"})
    while (frame := next_frame(client))["type"] != "pong":
        assert frame["type"] != "msg", f"a message reached {frame}"


def wait_log(server: Any, pattern: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, server.log()):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def test_register_chat_with_all_a_group_and_one_person_then_resize_and_exit(server, tmux) -> None:
    tmux.start_client("--host", server.host, "--port", str(server.port))  # no user: no login
    tmux.wait_for("^X Menu", "[all] >")
    tmux.type("too early")  # before login: kept in the line, with a hint
    tmux.keys("Enter")
    tmux.wait_for("not logged in: press ^X, then Log in", "[all] > too early")
    tmux.keys("C-u")
    tmux.wait_until(lambda s: shown_line(s, "[all] >") == "[all] >", "an empty line")
    log_in_from_the_menu(tmux, "r", "alice")
    tmux.wait_for("registered and logged in as alice", " online | alice @ 127.0.0.1")

    bob, carol = online(server, "bob"), online(server, "carol")
    screen = tmux.wait_for("[ ] bob", "[ ] carol", "| 3 online")
    assert screen.index("[x] All") < screen.index("[ ] bob") < screen.index("[ ] carol")
    # (their joins are not said: the smart filter hides joins of people who did not speak)

    # In the buffer All: to everyone.
    tmux.type("hello everyone")
    tmux.keys("Enter")
    for peer in (bob, carol):
        msg = next_msg(peer)
        assert (msg["type"], msg["from"], msg["to"], msg["text"]) == (
            "msg",
            "alice",
            "*",
            "hello everyone",
        )
    tmux.wait_re(r"alice: hello everyone  \[delivered: bob, carol\]")

    # A group: ^N to the list, Space on bob and carol, Escape: their buffer, back to typing.
    tmux.keys("C-n", "Down", "Space", "Down", "Space", "Escape")
    tmux.wait_for("[x] bob, carol", "[bob, carol] >", "2>bob, carol")
    tmux.type("привет группа")
    tmux.keys("Enter")
    for peer in (bob, carol):
        msg = next_msg(peer)
        assert (msg["to"], msg["text"]) == (["bob", "carol"], "привет группа")
    tmux.wait_re(r"\[group: bob, carol\] alice: привет группа  \[delivered: bob, carol\]")

    # One person: Enter on a row opens that person's buffer.
    tmux.keys("C-n", "Up", "Enter")
    tmux.wait_for("[bob] >", "3>bob")
    tmux.type("только Бобу 你好")
    tmux.keys("Enter")
    msg = next_msg(bob)
    assert (msg["to"], msg["text"]) == (["bob"], "только Бобу 你好")
    tmux.wait_re(r"\[private to bob\] alice: только Бобу 你好  \[delivered: bob\]")
    assert carol.silent(0.3)

    # Incoming private message: in bob's buffer, the one on screen.
    bob.send({"type": "send", "id": 1, "to": ["alice"], "text": "hi alice, от Боба"})
    tmux.wait_re(r"\[private\] bob: hi alice, от Боба")

    # A long message to everyone wraps inside the history pane of All (Alt-1).
    long_text = " ".join(f"word{i}" for i in range(60))
    carol.send({"type": "send", "id": 1, "to": "*", "text": long_text})
    tmux.wait_for("1+All (1)")
    tmux.keys("M-1")
    screen = tmux.wait_for("word59", "[all] >")
    assert "word0" in screen and all(len(line) <= 100 for line in screen.splitlines())

    # In bob's buffer when bob leaves: still bob's, marked offline; /query alone: All.
    tmux.type("/buffer bob")
    tmux.keys("Enter")
    tmux.wait_for("[bob] >")
    bob.close()
    tmux.wait_for("bob is offline (messages are kept for them)", "[bob (offline)] >", "| 2 online")
    tmux.type("/query")
    tmux.keys("Enter")
    tmux.wait_for("[all] >", "1>All")
    assert "bob" not in line_with(tmux.screen(), "[x] All")

    # Resize: smaller, tiny, and back; the client keeps working.
    tmux.resize(50, 14)
    tmux.wait_until(
        lambda s: "[all] >" in s and "| 2 online" in s and max(map(len, s.splitlines())) <= 50,
        "a 50-column layout",
    )
    tmux.resize(20, 4)
    tmux.wait_for("too small")
    tmux.resize(100, 30)
    tmux.wait_for("online | alice", "[all] >")
    tmux.type("still here")
    tmux.keys("Enter")
    assert next_msg(carol)["text"] == "still here"

    # Exit from the menu: bye, then the process ends with 0 and nothing on stderr.
    tmux.keys("C-x")
    tmux.wait_for("Exit")
    tmux.keys("e")
    assert tmux.exit_code() == 0
    assert tmux.stderr() == ""
    wait_log(server, r"closed fd=\d+ user=alice .*closed by the peer: bye")


def test_wrong_password_shows_the_reason_and_the_login_form_again(server, tmux) -> None:
    register(server, "alice")
    tmux.start_client(*client_args(server, "alice", password="wrong"))
    screen = tmux.wait_for("login refused: invalid user name or password", "Password:")
    assert "offline" in screen
    tmux.resize(70, 20)  # while the form is open: the chat screen must follow afterwards
    tmux.keys("Escape")  # cancels the form
    tmux.wait_until(
        lambda s: "Password:" not in s and "[all] >" in s and max(map(len, s.splitlines())) <= 70,
        "the chat screen at 70 columns",
    )


def test_refused_connection_shows_the_reason_and_the_login_form_again(server, tmux) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmux.start_client("--port", str(port), "--user", "alice", "--password", "x")
    tmux.wait_for(f"connection refused by 127.0.0.1:{port}", "Password:")


def test_server_restart_shows_bye_and_the_client_logs_in_again(start_server, tmux) -> None:
    first = start_server()
    tmux.start_client(*client_args(first, "alice", "--register"))
    tmux.wait_for("online | alice")
    assert first.stop() == 0
    tmux.wait_for("the server said bye (shutdown)", "reconnecting")
    second = start_server(
        "--port", str(first.port), users_file=first.users_file, key_file=first.key_file
    )
    assert second.port == first.port
    tmux.wait_for("reconnected as alice", "online | alice", timeout=30)
    peer = online(second, "bob")
    tmux.wait_for("[ ] bob")
    peer.send({"type": "send", "id": 1, "to": "*", "text": "welcome back"})
    tmux.wait_for("bob: welcome back")


def test_sigterm_says_bye_and_exits_cleanly(server, tmux) -> None:
    tmux.start_client(*client_args(server, "alice", "--register"))
    tmux.wait_for(" online | alice")
    os.kill(tmux.client_pid(), signal.SIGTERM)
    assert tmux.exit_code() == 128 + signal.SIGTERM
    assert tmux.stderr() == ""
    wait_log(server, r"closed fd=\d+ user=alice .*closed by the peer: bye")


def test_c_locale_without_coercion_still_types_and_shows_cyrillic(server, tmux) -> None:
    """As a frozen binary starts: LC_ALL=C, no C-locale coercion, no UTF-8 mode."""
    bob = online(server, "bob")
    tmux.start_client(
        *client_args(server, "alice", "--register"),
        python_flags=("-X", "utf8=0"),
        env=("LC_ALL=C", "LANG=C", "PYTHONCOERCECLOCALE=0", "PYTHONUTF8=0"),
    )
    tmux.wait_for(" online | alice", "[ ] bob")
    tmux.type("Иван 你好")
    tmux.keys("Enter")
    assert next_msg(bob)["text"] == "Иван 你好"
    tmux.wait_for("alice: Иван 你好  [delivered: bob]")
    bob.send({"type": "send", "id": 1, "to": ["alice"], "text": "ответ 世界"})
    tmux.wait_for("2@bob (1)")  # its own buffer
    tmux.keys("M-2")
    tmux.wait_for("[private] bob: ответ 世界")


def test_unknown_terminal_type_is_one_line(tmux) -> None:
    tmux.start_client("--user", "alice", env=("TERM=no-such-terminal-type",))
    assert tmux.exit_code() == 1
    assert tmux.stderr().splitlines() == [
        "chat-client: no terminfo entry for TERM=no-such-terminal-type "
        "(set TERMINFO_DIRS or use --no-tui)"
    ]


def test_tui_without_a_terminal_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chat.client", "--user", "alice"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "chat-client: the TUI needs a terminal on stdin and stdout (use --no-tui for scripts)"
    ]


# ----------------------------------------------------- v1.1: offline delivery and history
def row_of(screen: str, needle: str) -> int:
    return next(i for i, line in enumerate(screen.splitlines()) if needle in line)


def test_login_backfills_all_under_a_date_separator_then_shows_offline_messages_marked(
    server, tmux
) -> None:
    register(server, "alice")
    bob = online(server, "bob")
    for i in range(3):
        send_msg(bob, "*", f"before you came {i}", msg_id=i)
    assert send_msg(bob, ["alice"], "psst while away", msg_id=9)["queued"] == ["alice"]
    tmux.start_client(*client_args(server, "alice"))
    separator = f"-- {time.strftime('%a %Y-%m-%d')} --"
    marked = "[private] bob: psst while away  (while you were away)"
    screen = tmux.wait_for(separator, "bob: before you came 2", "logged in as alice", "@bob (1)")
    order = [
        row_of(screen, needle)
        for needle in (
            separator,
            "bob: before you came 0",
            "bob: before you came 1",
            "bob: before you came 2",
            "logged in as alice",
        )
    ]
    assert order == sorted(order) and order[0] < order[1], screen
    tmux.keys("M-2")  # the private message stored for alice is in bob's buffer
    tmux.wait_for(marked, "[bob] >")

    # Acknowledged once shown: after leaving, a new session of alice gets nothing stored.
    tmux.keys("C-x")
    tmux.wait_for("Exit")
    tmux.keys("e")
    assert tmux.exit_code() == 0
    again = server.client()
    again.login("alice", PASSWORD, register=False)
    again.send({"type": "ping"})
    while (frame := next_frame(again))["type"] != "pong":
        assert frame["type"] != "msg", frame


def test_a_message_to_someone_offline_shows_queued_for_them_and_unknown_names_missing(
    server, tmux
) -> None:
    register(server, "bob")
    tmux.start_client(*client_args(server, "alice", "--register"), width=140)
    tmux.wait_for(" online | alice")
    tmux.type("/msg bob see you later")
    tmux.keys("Enter")
    tmux.wait_for("2 bob")  # its buffer opens, the current one stays
    tmux.keys("M-2")
    tmux.wait_for("[private to bob] alice: see you later  [queued for bob (offline)]")
    tmux.type("@ghost are you there")  # a name nobody has: said at once, nothing sent
    tmux.keys("Enter")
    tmux.wait_for("no such user: ghost")
    bob = server.client()
    bob.login("bob", PASSWORD, register=False)
    assert bob.recv_type("msg")["text"] == "see you later"
    no_message_before_pong(bob)


def test_each_conversation_has_its_buffer_with_its_history_and_o_goes_back(server, tmux) -> None:
    register(server, "alice")
    bob, carol = online(server, "bob"), online(server, "carol")
    send_msg(bob, ["alice"], "bob to alice", msg_id=1)
    send_msg(bob, "*", "bob to everyone", msg_id=2)
    carol.send({"type": "send", "id": 3, "to": ["alice"], "text": "carol to alice"})
    assert carol.recv_type("sent")["id"] == 3  # bob's message to all comes first
    tmux.start_client(*client_args(server, "alice"))
    screen = tmux.wait_for("[ ] bob", "[ ] carol", "bob: bob to everyone", "@bob (1)", "@carol (1)")
    assert "bob to alice" not in screen and "carol to alice" not in screen

    tmux.keys("C-n", "Down", "Enter")  # bob under the cursor in the list: his buffer
    screen = tmux.wait_for("[private] bob: bob to alice", "[bob] >")
    assert "bob to everyone" not in screen and "carol to alice" not in screen
    tmux.keys("C-o")  # back to the buffer shown before: All
    tmux.wait_until(lambda s: "[all] >" in s and "bob: bob to everyone" in s, "the buffer All")

    tmux.type("/history carol")  # v1.1's command: the buffer of that conversation
    tmux.keys("Enter")
    screen = tmux.wait_for("[private] carol: carol to alice", "[carol] >")
    assert "bob to alice" not in screen and "bob to everyone" not in screen
    tmux.type("/all")
    tmux.keys("Enter")
    tmux.wait_until(lambda s: "[all] >" in s and "bob: bob to everyone" in s, "the buffer All")


def test_scrolling_up_past_the_oldest_line_fetches_the_page_before_it_in_place(
    server, tmux
) -> None:
    register(server, "alice")
    carol = online(server, "carol")
    for i in range(60):
        send_msg(carol, "*", f"old {i:02d}", msg_id=i)
    tmux.start_client(*client_args(server, "alice"), height=20)
    tmux.wait_for("carol: old 59")
    tmux.keys("C-n", "C-n", "Home")  # into the history pane, to its oldest line
    separator = f"-- {time.strftime('%a %Y-%m-%d')} --"
    before = tmux.wait_settled("carol: old 10", separator).splitlines()
    top = row_of("\n".join(before), separator)
    assert "carol: old 10" in before[top + 1]  # the first page is the last 50
    tmux.keys("Up")  # past the oldest line: the page before it
    after = tmux.wait_settled("carol: old 09").splitlines()
    assert "carol: old 09" in after[top]
    assert after[top + 1 :] == before[top + 1 :]  # what the user was reading did not move
    tmux.keys("Home")
    tmux.wait_for("-- beginning of the history --", "carol: old 00")
