"""The TUI's login and register forms, in tmux against the real server: logged in, the menu
asks before logging out and keeps every key; the password field starts empty; registering
asks for the password twice and warns when it is short; `--register` for an account that
exists logs in instead; a form on a terminal too small for it says so."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from server_support import PASSWORD, TOO_SHORT, online, refusing_registration, register
from test_client_tui import client_args, line_with, no_message_before_pong, start_online
from test_client_tui_screen import popup_text
from tui_support import Tmux

from tls_peer import Peer

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def whole_popup(tmux: Tmux, *needles: str) -> str:
    """The popup's words once its frame is drawn whole and holds every needle."""
    screen = tmux.wait_until(
        lambda s: all(n in popup_text(s) for n in needles), f"a popup with {needles}"
    )
    return popup_text(screen)


def password_field(screen: str) -> str:
    """What the password field shows (dashes for what is typed), without the frame."""
    return line_with(screen, "Password:").split("Password:")[1].split("│")[0].strip()


# ------------------------------------------------------------------- logged in: the menu
def test_logged_in_the_menu_asks_first_and_a_password_typed_blindly_goes_nowhere(
    server, tmux
) -> None:
    """The issue's case: ^X, l, then the password and Enter at once, without looking."""
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Register", "Exit")
    tmux.keys("l")
    tmux.type("hunter2")
    tmux.keys("Enter")  # lands on the question's Cancel: nothing happens
    screen = tmux.wait_settled(" online | alice @", "[all] >")
    assert "hunter2" not in screen, screen
    no_message_before_pong(bob)
    tmux.type("still here")  # the message line works as before, still logged in
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "still here"


@pytest.mark.parametrize(("key", "title"), [("l", "Log in"), ("r", "Register")])
def test_logged_in_the_menu_asks_whether_to_log_out_and_escape_keeps_the_session(
    server, tmux, key: str, title: str
) -> None:
    online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Exit")
    tmux.keys(key)
    text = whole_popup(tmux, "Log out first", "Cancel")
    assert "You are logged in as alice" in text and "Log out" in text, text
    assert title in tmux.screen()
    tmux.keys("Escape")
    screen = tmux.wait_until(lambda s: "Log out first" not in s, "the question closed")
    assert " online | alice @" in screen and "Password:" not in screen


def test_confirming_the_log_out_opens_the_form_and_logs_in_as_someone_else(server, tmux) -> None:
    register(server, "carol")
    bob = online(server, "bob")
    start_online(tmux, server, "alice", "--register")
    tmux.wait_for("[ ] bob")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Exit")
    tmux.keys("l")
    whole_popup(tmux, "Log out first")
    tmux.keys("Tab", "Enter")  # from Cancel to Log out, and press it
    screen = tmux.wait_for("Password:", "Server:", "logged out")
    assert password_field(screen) == ""
    tmux.keys("Up", "C-u")
    tmux.type("carol")
    tmux.keys("Down")
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.wait_for("logged in as carol", " online | carol @")
    tmux.type("hi from carol")
    tmux.keys("Enter")
    frame = bob.recv_type("msg")
    assert (frame["from"], frame["text"]) == ("carol", "hi from carol")


# --------------------------------------------------------------------- the password field
def test_the_form_opens_again_with_the_password_field_empty(server, tmux) -> None:
    """A refused password is not kept: typing the right one must not append to it."""
    register(server, "alice")
    tmux.start_client(*client_args(server, "alice", password="wrong"))
    screen = tmux.wait_settled("login refused: invalid user name or password", "Password:")
    assert password_field(screen) == "", screen
    tmux.type(PASSWORD)  # the cursor is on the (empty) password field
    tmux.keys("Enter")
    tmux.wait_for("logged in as alice", " online | alice @")


# ------------------------------------------------------------------------ registering
def test_the_register_form_asks_twice_then_warns_about_a_short_password(server, tmux) -> None:
    tmux.start_client("--host", server.host, "--port", str(server.port))
    tmux.wait_for("^X Menu", "offline")
    tmux.keys("C-x")
    tmux.wait_for("Register")
    tmux.keys("r")
    screen = tmux.wait_for("Password:", "Again:")
    assert password_field(screen) == ""
    tmux.type("dora")
    tmux.keys("Down")
    tmux.type("short")
    tmux.keys("Enter")  # on to the second field
    tmux.type("shorx")
    tmux.keys("Enter")
    whole_popup(tmux, "the two passwords differ: type them again")
    assert password_field(tmux.screen()) == ""
    tmux.type("short")  # the focus is back on the first field
    tmux.keys("Enter")
    tmux.type("short")
    tmux.keys("Enter")
    whole_popup(tmux, "a password under 8 characters is easy to guess", "Enter again")
    tmux.keys("Enter")  # the same password once more: the user's choice
    tmux.wait_for("registered and logged in as dora", " online | dora @")


def test_register_on_the_command_line_for_an_account_that_exists_logs_in_instead(
    server, tmux
) -> None:
    register(server, "alice")
    tmux.start_client(*client_args(server, "alice", "--register"))
    screen = tmux.wait_for(
        "account alice exists: leave out --register (logging in instead)",
        "logged in as alice",
        " online | alice @",
    )
    assert "Password:" not in screen and "said bye" not in screen
    assert "user name is taken" not in screen and "registered and" not in screen


def test_register_for_an_account_that_exists_with_another_password_opens_the_login_form(
    server, tmux
) -> None:
    register(server, "alice")
    tmux.start_client(*client_args(server, "alice", "--register", password="not hers"))
    text = whole_popup(tmux, "leave out --register", "login refused")
    assert "account alice exists (leave out --register); login refused: invalid user" in text
    screen = tmux.screen()
    assert "Again:" not in screen and "┌ Log in" in screen  # the Log in form, not Register
    assert "said bye" not in screen
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.wait_for("logged in as alice", " online | alice @")


@pytest.fixture
def refusing_server() -> Iterator[Peer]:
    peer = Peer(refusing_registration, None)
    yield peer
    peer.close()


def test_a_registration_the_server_refuses_shows_its_text(refusing_server, tmux) -> None:
    peer = refusing_server
    tmux.start_client(
        "--host", peer.host, "--port", str(peer.port), "--user", "dora", "--password", "abc",
        "--register",
    )  # fmt: skip
    text = whole_popup(tmux, "registration refused")
    assert f"registration refused: {TOO_SHORT}" in text
    screen = tmux.screen()
    assert "warning: a password under 8 characters is easy to guess" in screen
    assert "┌ Register" in screen and "Again:" in screen and "said bye" not in screen


# ---------------------------------------------------------------- a terminal too small
@pytest.mark.parametrize(("width", "height"), [(40, 10), (20, 5)])
def test_the_form_on_a_terminal_too_small_for_it_says_so_and_comes_back(
    server, tmux, width: int, height: int
) -> None:
    register(server, "alice")
    tmux.start_client("--host", server.host, "--port", str(server.port), "--user", "alice")
    tmux.wait_for("^X Menu")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Exit")
    tmux.keys("l")
    whole_popup(tmux, "Server:", "Password:")
    tmux.resize(width, height)
    message = f"Terminal too small ({width}x{height}); Escape: back".split()
    screen = tmux.wait_until(lambda s: s.split()[-2:] == message[-2:], "the whole message")
    assert screen.split() == message, screen  # nothing else: no fragment of the form
    tmux.resize(100, 30)
    whole_popup(tmux, "Server:", "User: alice", "Password:")
    assert "^X Menu" in tmux.screen()  # the chat screen is drawn again under it
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.wait_for("logged in as alice", " online | alice @")
