"""The TUI's message line, in tmux against the real server: commands, `@name`, input
history, nick completion, the paste guard, and keys that never turn into text."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import pytest
from server_support import online
from test_client_tui import no_message_before_pong, shown_line, start_online

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def input_line(screen: str) -> str:
    """The message line ("" while it is not on the screen: a wait keeps polling)."""
    return shown_line(screen, "] > ")


def test_msg_and_at_name_go_to_those_people_only_whatever_the_buffer(server, tmux) -> None:
    bob, carol = online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob", "[ ] carol")
    tmux.keys("C-n", "Down", "Enter")  # bob's buffer
    tmux.wait_for("[bob] >")
    tmux.type("/msg carol hello")
    tmux.keys("Enter")
    frame = carol.recv_type("msg")
    assert (frame["to"], frame["text"]) == (["carol"], "hello")
    tmux.type("@carol again, privately")
    tmux.keys("Enter")
    frame = carol.recv_type("msg")
    assert (frame["to"], frame["text"]) == (["carol"], "again, privately")
    # Said in the buffer on screen too (it stays bob's), and carol's buffer opens.
    tmux.wait_for(
        "[private to carol] alice: again, privately  [delivered: carol]", "[bob] >", "3 carol"
    )
    no_message_before_pong(bob)
    tmux.type("//etc/hosts is a path")  # a doubled slash sends the text with one
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "/etc/hosts is a path"


def test_an_unknown_command_is_an_error_on_screen_and_never_sent(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.type("/frobnicate now")
    tmux.keys("Enter")
    screen = tmux.wait_for("unknown command /frobnicate (/help lists the commands)")
    assert "/frobnicate now" in input_line(screen)  # kept, to be corrected
    no_message_before_pong(bob)


def test_who_help_and_quit(server, tmux) -> None:
    online(server, "bob"), online(server, "carol")
    start_online(tmux, server, "alice", "--register", width=150, height=70)
    tmux.wait_for("[ ] bob", "[ ] carol")
    tmux.type("/who")
    tmux.keys("Enter")
    tmux.wait_for("online (3): alice, bob, carol")
    tmux.type("/help")
    tmux.keys("Enter")
    tmux.wait_for("/msg NAME[,NAME...]|#room text -- as @NAME text", "/quit", "Tab", "^N")
    tmux.type("/quit")
    tmux.keys("Enter")
    assert tmux.exit_code() == 0
    assert tmux.stderr() == ""


def test_up_and_down_recall_what_was_typed(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    for text in ("first line", "second line"):
        tmux.type(text)
        tmux.keys("Enter")
        assert bob.recv_type("msg")["text"] == text
    tmux.type("a draft")
    tmux.keys("Up")
    tmux.wait_until(lambda s: input_line(s).endswith("> second line"), "the last line")
    tmux.keys("Up")
    tmux.wait_until(lambda s: input_line(s).endswith("> first line"), "the one before")
    tmux.keys("Down", "Down")
    tmux.wait_until(lambda s: input_line(s).endswith("> a draft"), "the draft again")
    tmux.keys("Up", "Up", "Enter")
    assert bob.recv_type("msg")["text"] == "first line"


def test_tab_completes_a_nickname_and_cycles(server, tmux) -> None:
    online(server, "bob"), online(server, "bella"), online(server, "carol")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bella", "[ ] bob", "[ ] carol")
    tmux.type("ca")
    tmux.keys("Tab")
    tmux.type("x")  # (a capture drops trailing spaces: type after them)
    tmux.wait_until(lambda s: input_line(s).endswith("> carol: x"), "carol: at the start")
    tmux.keys("C-u")
    tmux.type("ask b")
    tmux.keys("Tab")
    tmux.wait_until(lambda s: input_line(s).endswith("> ask bella"), "the first b name")
    tmux.keys("Tab")
    tmux.wait_until(lambda s: input_line(s).endswith("> ask bob"), "the next one")
    tmux.type("now")
    screen = tmux.wait_until(lambda s: input_line(s).endswith("> ask bob now"), "a space after")
    assert "[all] >" in screen and "^X Menu" in screen  # the focus stayed on the message line


def test_a_paste_of_many_lines_asks_before_sending_them(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register", width=120)
    tmux.wait_for("[ ] bob")
    lines = [f"pasted line {i}" for i in range(6)]
    tmux.paste("\n".join(lines) + "\n")
    tmux.wait_for("paste of 6 lines: Enter sends 6 messages to all, Escape drops them")
    no_message_before_pong(bob)
    tmux.keys("Escape")
    tmux.wait_for("paste of 6 lines dropped")
    no_message_before_pong(bob)
    tmux.paste("\n".join(lines) + "\n")
    tmux.wait_for("paste of 6 lines: Enter sends")
    tmux.keys("Enter")
    assert [bob.recv_type("msg")["text"] for _ in lines] == lines
    tmux.paste("two\nlines\n")  # a few lines go as typed
    assert [bob.recv_type("msg")["text"] for _ in range(2)] == ["two", "lines"]


def test_typing_in_the_list_or_the_history_goes_to_the_message_line(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.keys("C-n")  # to the list: the help line says so
    tmux.wait_for("list: Up/Down move")
    tmux.keys("C-n")  # to the history
    tmux.wait_for("history: Up/Down/PgUp/PgDn scroll")
    tmux.type("hello")
    screen = tmux.wait_until(lambda s: input_line(s).endswith("> hello"), "the typed text")
    assert "^X Menu" in screen  # the focus is back on the message line, and says so
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "hello"


def test_a_line_of_spaces_sends_nothing_and_leaves_nothing_behind(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.type("   ")
    tmux.keys("Enter")
    tmux.type("hi")
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "hi"


def test_home_and_end_edit_the_line_under_tmux_with_xterm_keys(server, tmux) -> None:
    """tmux sends `ESC [ 1 ~` / `ESC [ 4 ~`, which xterm-256color's terminfo does not list."""
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register", env=("TERM=xterm-256color",))
    tmux.type("middle")
    tmux.keys("Home")
    tmux.type("[")
    tmux.keys("End")
    tmux.type("]")
    tmux.wait_until(lambda s: input_line(s).endswith("> [middle]"), "both ends edited")
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "[middle]"


def test_a_pasted_tab_is_sent_as_a_tab_and_shown_as_a_space(server, tmux) -> None:
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.paste("name\tvalue")
    tmux.wait_until(lambda s: input_line(s).endswith("> name value"), "the paste in the line")
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "name\tvalue"
    tmux.wait_for("alice: name value  [delivered: bob]")


def test_a_paste_the_client_reads_late_lands_whole_and_the_wait_waits_for_it(server, tmux) -> None:
    """A loaded machine, made on purpose: the client is stopped while the paste arrives, so
    the test's first looks see an empty message line. The wait must keep looking (it used to
    end at once, which made the paste and Tab tests fail now and then), and the client must
    read the whole bracketed paste from its buffer when it runs again."""
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    pid = tmux.client_pid()
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(0.5, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        tmux.paste("late\tpaste")
        tmux.wait_until(lambda s: input_line(s).endswith("> late paste"), "the late paste")
    finally:
        resume.join()
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "late\tpaste"
