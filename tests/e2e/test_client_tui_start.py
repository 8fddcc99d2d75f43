"""Starting the TUI, in tmux against the real server: the command line (and the config
file) is enough to log in or register, as an IRC client given a server and a nick."""

from __future__ import annotations

import os
import shutil

import pytest
from server_support import PASSWORD, online, register
from test_client_tui import client_args, line_with
from test_client_tui_screen import popup_text

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def test_register_on_the_command_line_registers_at_start_without_a_key(server, tmux) -> None:
    bob = online(server, "bob")
    tmux.start_client(*client_args(server, "alice", "--register"))
    screen = tmux.wait_for("registered and logged in as alice", " online | alice @", "[ ] bob")
    assert "Password:" not in screen
    tmux.type("hello from the command line")
    tmux.keys("Enter")
    assert bob.recv_type("msg")["text"] == "hello from the command line"


def test_user_and_password_from_the_environment_log_in_at_start(server, tmux) -> None:
    register(server, "alice")
    tmux.start_client(
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--user",
        "alice",
        env=(f"CHAT_PASSWORD={PASSWORD}",),
    )
    screen = tmux.wait_for("logged in as alice", " online | alice @")
    assert "registered" not in screen and "Password:" not in screen


def test_a_user_without_a_password_is_asked_for_it_in_the_form_on_the_password(
    server, tmux
) -> None:
    register(server, "alice")
    tmux.start_client("--host", server.host, "--port", str(server.port), "--user", "alice")
    tmux.wait_for("Press ^X, then l to log in as alice: type the password there.")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Exit")
    tmux.keys("l")
    tmux.wait_for("Password:", "alice")
    tmux.type(PASSWORD)  # the cursor is in the password field already
    tmux.keys("Enter")
    tmux.wait_for("logged in as alice", " online | alice @")


def test_a_refused_login_at_start_opens_the_form_with_the_reason_and_the_menu_still_works(
    server, tmux
) -> None:
    register(server, "alice", "bob")
    tmux.start_client(*client_args(server, "alice", password="wrong"))
    tmux.wait_for("login refused: invalid user name or password", "Password:")
    tmux.keys("Escape")
    tmux.wait_until(lambda s: "Password:" not in s, "the form closed")
    # Log in as someone else from the menu: the Log in form, another name.
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Register", "Log out", "Exit")
    tmux.keys("l")
    screen = tmux.wait_for("Password:", "Server:")
    assert "login refused" not in popup_text(screen)  # an old reason is not the new form's
    tmux.keys("Up", "C-u")
    tmux.type("bob")
    tmux.keys("Down", "C-u")
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.wait_for("logged in as bob", " online | bob @")


def test_the_config_file_gives_host_port_and_user_and_the_command_line_wins(server, tmux) -> None:
    register(server, "alice")
    folder = tmux.config_home / "chat-client"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        f'host = "{server.host}"\nport = 1\nuser = "alice"\nbell = false\n', encoding="utf-8"
    )
    tmux.start_client("--port", str(server.port), env=(f"CHAT_PASSWORD={PASSWORD}",))
    screen = tmux.wait_for("logged in as alice", f" online | alice @ 127.0.0.1:{server.port}")
    assert "Password:" not in screen


def test_a_password_in_a_config_file_that_others_can_read_is_refused_in_one_line(
    server, tmux
) -> None:
    register(server, "alice")
    folder = tmux.config_home / "chat-client"
    folder.mkdir(parents=True)
    path = folder / "config.toml"
    path.write_text(
        f'port = {server.port}\nuser = "alice"\npassword = "{PASSWORD}"\n', encoding="utf-8"
    )
    os.chmod(path, 0o644)
    tmux.start_client()
    assert tmux.exit_code() == 2
    assert tmux.stderr().splitlines() == [
        f"chat-client: {path} holds a password and others can read it (mode 0644): "
        f"chmod 600 {path}, or remove the password"
    ]
    os.chmod(path, 0o600)
    tmux.kill()
    tmux.exit_file.unlink()
    tmux.start_client()
    screen = tmux.wait_for("logged in as alice", " online | alice @")
    assert "Password:" not in line_with(screen, "online")
