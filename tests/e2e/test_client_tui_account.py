"""The TUI and one's own account, in tmux against the real server (issue "6 of 6": reconnects
with the v1.2 `resume` token; issue "5 of 6": `/passwd` and "Delete my account"). The
server's log says whether a login used a token; the other sessions are raw connections."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
from server_support import PASSWORD, register
from test_client_linemode_v12 import v12
from test_client_tokens import NEW, restarted, revoke_tokens, run_client, wait_log
from test_client_tui import start_online
from test_client_tui_forms import whole_popup

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def logs_in(server: Any, name: str, password: str) -> bool:
    c = server.client()
    c.send({"type": "auth", "user": name, "password": password})
    return c.recv()["type"] == "auth_ok"


def test_a_typed_password_is_forgotten_the_token_reconnects_and_a_dead_one_opens_the_form(
    start_server, tmux
) -> None:
    first = start_server()
    register(first, "alice")
    tmux.start_client("--host", first.host, "--port", str(first.port), "--user", "alice")
    tmux.wait_for("Press ^X, then l to log in as alice")
    tmux.keys("C-x")
    tmux.wait_for("Log in", "Register", "Exit")
    tmux.keys("l")
    tmux.wait_for("Password:")
    tmux.type(PASSWORD)  # typed here: the client forgets it once the server gives a token
    tmux.keys("Enter")
    tmux.wait_for(" online | alice @", "logged in as alice")
    assert first.stop() == 0
    second = restarted(start_server, first)
    tmux.wait_for("reconnected as alice", timeout=30)
    wait_log(second, r"logged in .*user=alice .* with a token$")
    # The password changes elsewhere (to the same one here): every token dies. The client
    # has no password left to fall back to: the form asks, saying why.
    revoke_tokens(second, "alice")
    assert second.stop() == 0
    third = restarted(start_server, second)
    screen = whole_popup(tmux, "Server:", "login token was refused")
    assert "type the password" in screen, screen
    wait_log(third, r"login failed .*bad, expired or revoked token")
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.wait_for(" online | alice @")
    wait_log(third, r"logged in .*user=alice peer=\S+$")  # with the password


def test_passwd_form_changes_it_logs_out_the_others_and_reconnects_with_the_new_one(
    start_server, tmux
) -> None:
    first = start_server()
    start_online(tmux, first, "alice", "--register")
    phone = v12(first, "alice", register=False)
    tmux.type("/passwd")
    tmux.keys("Enter")
    fields = ("Old:", "New:", "Again:", "Log out my other sessions")
    whole_popup(tmux, "New password for alice", *fields)
    tmux.type(PASSWORD)
    tmux.keys("Enter")
    tmux.type(NEW)
    tmux.keys("Enter")
    tmux.type("not the same")
    tmux.keys("Enter", "Enter")  # on the tick: Enter submits
    whole_popup(tmux, "the two new passwords differ: type them again")
    tmux.type(NEW)
    tmux.keys("Enter")
    tmux.type(NEW)
    tmux.keys("Enter", "Space", "Enter")  # tick "log out my other sessions", submit
    tmux.wait_for("password changed; your other sessions are logged out")
    assert phone.recv_type("bye")["reason"] == "password_changed"
    assert logs_in(first, "alice", NEW) and not logs_in(first, "alice", PASSWORD)
    # Its token died with the change: after a restart the client logs in with the new
    # password it was given, and gets a token again.
    assert first.stop() == 0
    second = restarted(start_server, first)
    tmux.wait_for("reconnected as alice", timeout=30)
    log = wait_log(second, r"logged in .*user=alice peer=\S+$")
    assert "login failed" not in log
    # Escape leaves the form and changes nothing.
    tmux.type("/passwd")
    tmux.keys("Enter")
    whole_popup(tmux, "New password for alice")
    tmux.type("whatever")
    tmux.keys("Escape")
    tmux.wait_until(lambda s: "New password for" not in s, "the form closed")
    assert logs_in(second, "alice", NEW)


def test_delete_my_account_asks_the_password_then_the_form_says_the_account_is_gone(
    server, tmux
) -> None:
    start_online(tmux, server, "alice", "--register")
    tmux.keys("C-x")
    tmux.wait_for("Delete my account")
    tmux.keys("d")
    whole_popup(tmux, "Delete the account alice for good?", "Password:")
    tmux.type("wrong password")
    tmux.keys("Enter", "Enter")  # to Delete, then press it
    tmux.wait_for("account not deleted: the password is wrong (bad_credentials)")
    assert logs_in(server, "alice", PASSWORD)
    tmux.keys("C-x")
    tmux.wait_for("Delete my account")
    tmux.keys("d")
    whole_popup(tmux, "Delete the account alice for good?")
    tmux.keys("Escape")  # changed my mind
    tmux.wait_until(lambda s: "for good" not in s, "the question closed")
    assert logs_in(server, "alice", PASSWORD)
    tmux.keys("C-x")
    tmux.wait_for("Delete my account")
    tmux.keys("d")
    whole_popup(tmux, "Delete the account alice for good?")
    tmux.type(PASSWORD)
    tmux.keys("Enter", "Enter")
    screen = whole_popup(tmux, "Server:", "the account was deleted")
    assert re.search(r"account_deleted", screen), screen
    assert not logs_in(server, "alice", PASSWORD)
    tmux.keys("Escape")
    tmux.wait_for(" offline | alice @", "account alice deleted")


def test_the_config_files_token_logs_the_tui_in_without_a_password(server, tmux) -> None:
    register(server, "alice")
    path = tmux.config_home / "chat-client" / "config.toml"
    path.parent.mkdir(parents=True)
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice")
    saved = run_client(
        *args, "--save-config", "--save-token", config_home=tmux.config_home,
        CHAT_PASSWORD=PASSWORD,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    tmux.start_client()  # nothing on the command line: host, user and token from the file
    tmux.wait_for(" online | alice @")
    wait_log(server, r"logged in .*user=alice .* with a token$")


def test_logged_out_by_a_password_change_elsewhere_the_form_opens_instead_of_reconnecting(
    server, tmux
) -> None:
    start_online(tmux, server, "alice", "--register")
    phone = v12(server, "alice", register=False)
    phone.send({"type": "passwd", "id": "p", "old": PASSWORD, "new": NEW, "logout_others": True})
    assert phone.recv_type("ok")["id"] == "p"
    screen = whole_popup(tmux, "Server:", "the password was changed in another session")
    assert "log in with the new password" in screen, screen
    assert "reconnecting" not in tmux.screen().splitlines()[0]
    tmux.type(NEW)
    tmux.keys("Enter")
    tmux.wait_for(" online | alice @")


def test_a_given_password_is_the_fallback_of_a_refused_token(start_server, tmux) -> None:
    first = start_server()
    start_online(tmux, first, "alice", "--register")  # --password: given, so kept
    revoke_tokens(first, "alice")
    assert first.stop() == 0
    second = restarted(start_server, first)
    tmux.wait_for("logging in with the password", "reconnected as alice", timeout=30)
    log = wait_log(second, r"logged in .*user=alice peer=\S+$")
    assert "bad, expired or revoked token" in log
