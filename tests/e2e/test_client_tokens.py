"""Login tokens and one's own account in line mode, end to end (issue "6 of 6": the client
reconnects with the v1.2 `resume` token; issue "5 of 6": `--passwd`): real `chat-client`
processes against the real server, which says in its log whether a login used a token.

A token is never printed: every test that sees one checks the client's output and log."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from server_support import PASSWORD, register
from test_client_linemode import clients  # noqa: F401 (a fixture)
from test_client_linemode_v12 import objects, v12

from tls_peer import Peer

NEW = "a new horse battery"


def wait_log(server: Any, pattern: str, timeout: float = 15.0, count: int = 1) -> str:
    """The server's log once `pattern` matches `count` of its lines."""
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, server.log(), re.MULTILINE)) < count:
        assert time.monotonic() < deadline, f"no {count} x {pattern!r} in:\n{server.log()}"
        time.sleep(0.05)
    return server.log()


def revoke_tokens(server: Any, name: str) -> None:
    """A `passwd` to the same password: every token of `name` dies, the password still works."""
    c = v12(server, name, register=False)
    c.send({"type": "passwd", "id": "p", "old": PASSWORD, "new": PASSWORD})
    assert c.recv_type("ok")["id"] == "p"
    c.send({"type": "bye"})
    c.expect_closed()


def server_files(server: Any) -> list[str]:
    return ["--users-file", str(server.users_file), "--key-file", str(server.key_file)]


def run_client(
    *args: str, config_home: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CHAT_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "chat.client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "XDG_CONFIG_HOME": str(config_home), **env},
    )


def restarted(start_server: Any, old: Any) -> Any:
    return start_server("--port", str(old.port), users_file=old.users_file, key_file=old.key_file)


def test_reconnect_logs_in_with_the_token(start_server, clients) -> None:  # noqa: F811
    first = start_server()
    alice = clients(first, "alice", "--register", "--reconnect", "--json")
    alice.wait_for(r'"event": "online"')
    wait_log(first, r"registered and logged in .*alice")
    assert first.stop() == 0
    alice.wait_for(r'"event": "disconnected"')
    second = restarted(start_server, first)
    # (wait_for reads from the start: the server's log says when the second login is done)
    log = wait_log(second, r"logged in .*user=alice .* with a token$", timeout=30)
    assert "login failed" not in log
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    assert [o["event"] for o in objects(out)].count("online") == 2


def test_a_refused_token_falls_back_to_the_password(start_server, clients) -> None:  # noqa: F811
    first = start_server()
    alice = clients(first, "alice", "--register", "--reconnect", "--json")
    alice.wait_for(r'"event": "online"')
    revoke_tokens(first, "alice")  # alice's token (and every other) is dead now
    assert first.stop() == 0
    second = restarted(start_server, first)
    alice.wait_for(r'"event": "token_refused"', timeout=30)
    log = wait_log(second, r"logged in .*user=alice peer=\S+$")  # with the password
    assert "bad, expired or revoked token" in log
    # The login after the fallback brought a new token: the next reconnect uses it.
    assert second.stop() == 0
    third = restarted(start_server, second)
    wait_log(third, r"logged in .*alice.* with a token$", timeout=30)
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    assert [o["event"] for o in objects(out)].count("online") == 3


def test_a_password_changed_elsewhere_with_logout_others_ends_line_mode(server, clients) -> None:  # noqa: F811
    alice = clients(server, "alice", "--register", "--reconnect")
    alice.wait_for(r"\* online:")
    phone = v12(server, "alice", register=False)
    phone.send({"type": "passwd", "id": "p", "old": PASSWORD, "new": NEW, "logout_others": True})
    assert phone.recv_type("ok")["id"] == "p"
    rc, out, err = alice.finish()
    assert rc == 4, (out, err)  # no reconnect: it could only be refused
    assert err.strip() == (
        "chat-client: disconnected: the server said bye (password_changed): the password was "
        "changed in another session, which logged this one out: log in with the new password"
    )


def test_save_token_saves_a_token_not_the_password_and_it_logs_in(server, tmp_path) -> None:
    register(server, "alice")
    home = tmp_path / "conf"
    path = home / "chat-client" / "config.toml"
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice")
    # A password saved before: the token replaces it.
    saved = run_client(
        *args, "--save-config", "--save-password", config_home=home, CHAT_PASSWORD=PASSWORD
    )
    assert saved.returncode == 0, saved.stderr
    done = run_client(
        *args, "--save-config", "--save-token", config_home=home, CHAT_PASSWORD=PASSWORD
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == f"chat-client: saved host, port, user, bell, token to {path} (mode 0600)\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and "password" not in text
    token = re.search(r'^token = "(.+)"$', text, re.MULTILINE)
    assert token is not None, text
    assert token.group(1) not in done.stdout + done.stderr

    # No password anywhere now: the saved token logs in, and is never printed or logged.
    bob = v12(server, "bob")
    log = tmp_path / "client.log"
    sent = run_client(
        "--no-tui", "--log-file", str(log), config_home=home, stdin="from the token\n"
    )
    assert sent.returncode == 0, sent.stderr
    assert bob.recv_type("msg")["text"] == "from the token"
    wait_log(server, r"logged in .*alice.* with a token$")
    new_text = path.read_text()  # the token of that login replaced the saved one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for secret in {token.group(1), re.search(r'token = "(.+)"', new_text).group(1)}:
        assert secret not in sent.stdout + sent.stderr + log.read_text()
        assert secret not in server.log()


def test_a_revoked_saved_token_is_a_clear_refusal(server, tmp_path) -> None:
    register(server, "alice")
    home = tmp_path / "conf"
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice")
    done = run_client(
        *args, "--save-config", "--save-token", config_home=home, CHAT_PASSWORD=PASSWORD
    )
    assert done.returncode == 0, done.stderr
    revoke_tokens(server, "alice")  # e.g. the password changed on another machine
    refused = run_client("--no-tui", "--json", config_home=home)
    assert refused.returncode == 3
    message = (
        "login refused: the login token was refused (expired, or revoked by a password "
        "change): run again with the password ($CHAT_PASSWORD, --password, or asked on the "
        "terminal); --save-config --save-token saves a new token (bad_credentials)"
    )
    assert refused.stderr == f"chat-client: {message}\n"
    assert json.loads(refused.stdout) == {"event": "fatal", "message": message, "exit": 3}
    # With the password given, it logs in again (the password is the fallback).
    again = run_client("--no-tui", config_home=home, CHAT_PASSWORD=PASSWORD)
    assert again.returncode == 0, again.stderr


def test_a_banned_account_s_saved_token_says_banned(server, tmp_path) -> None:
    register(server, "alice")
    home = tmp_path / "conf"
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice")
    done = run_client(
        *args, "--save-config", "--save-token", config_home=home, CHAT_PASSWORD=PASSWORD
    )
    assert done.returncode == 0, done.stderr
    ban = subprocess.run(
        [sys.executable, "-m", "chat.server", "user", "ban", "alice", *server_files(server)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ban.returncode == 0, ban.stderr
    refused = run_client("--no-tui", config_home=home)
    assert refused.returncode == 3
    assert refused.stderr == "chat-client: login refused: this account is banned (banned)\n"


def test_a_config_file_with_a_token_that_others_can_read_is_refused(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('user = "alice"\ntoken = "abc"\n', encoding="utf-8")
    os.chmod(path, 0o640)
    done = run_client("--no-tui", "--config", str(path), config_home=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"chat-client: {path} holds a token and others can read it (mode 0640): "
        f"chmod 600 {path}, or remove the token\n"
    )


def test_passwd_reads_old_and_new_from_stdin(server, tmp_path) -> None:
    register(server, "alice")
    other = v12(server, "alice", register=False)
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice", "--passwd")
    done = run_client(*args, "--logout-others", config_home=tmp_path, stdin=f"{PASSWORD}\n{NEW}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("* password changed (your login tokens are revoked)\n")
    assert done.stderr == ""
    bye = other.recv_type("bye")
    assert bye["reason"] == "password_changed"
    assert PASSWORD not in done.stdout and NEW not in done.stdout
    # Only the new password logs in now.
    c = server.client()
    c.login("alice", NEW, register=False)
    # A wrong old password: the login with it is refused (exit 3), nothing changes.
    wrong = run_client(*args, config_home=tmp_path, stdin=f"{PASSWORD}\nanother\r\n")
    assert wrong.returncode == 3
    assert wrong.stderr == (
        "chat-client: login refused: invalid user name or password (bad_credentials)\n"
    )


def test_passwd_refused_by_the_server_and_bad_input(start_server, tmp_path) -> None:
    server = start_server("--min-password", "8")
    register(server, "alice")
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice", "--passwd")
    short = run_client(*args, "--json", config_home=tmp_path, stdin=f"{PASSWORD}\nshort\n")
    assert short.returncode == 3
    (line,) = short.stderr.splitlines()
    assert line.startswith("chat-client: password not changed: ") and "(bad_request)" in line
    assert json.loads(short.stdout.splitlines()[-1])["exit"] == 3
    one_line = run_client(*args, config_home=tmp_path, stdin=f"{PASSWORD}\n")
    assert one_line.returncode == 2
    assert one_line.stderr == (
        "chat-client: --passwd reads two lines on stdin: the old password, then the new one "
        "(got 1 lines)\n"
    )
    argv = run_client(*args, "--password", PASSWORD, config_home=tmp_path, stdin="a\nb\n")
    assert argv.returncode == 2 and "reads both passwords from stdin" in argv.stderr


def test_a_closed_registration_is_one_line_and_an_invite_code_registers(
    start_server,
    tmp_path,
    clients,  # noqa: F811
) -> None:
    """Protocol v1.2 section 8, the client's side: `registration_closed` is a refused
    registration (it used to leave the client waiting in AUTH), and `--invite CODE` goes
    with `--register`."""
    closed = start_server("--registration", "closed")
    refused = clients(closed, "alice", "--register", password=PASSWORD)
    rc, _, err = refused.finish(timeout=20)
    assert rc == 3
    assert err == (
        "chat-client: registration refused: registration is closed on this server "
        "(registration_closed)\n"
    )
    assert closed.stop() == 0  # (one server per data folder)
    server = start_server("--registration", "invite")
    made = subprocess.run(
        [sys.executable, "-m", "chat.server", "invite", "create", *server_files(server)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=server.users_file.parent,
    )
    assert made.returncode == 0, made.stderr
    code = made.stdout.strip()
    without = clients(server, "alice", "--register", password=PASSWORD)
    rc, _, err = without.finish(timeout=20)
    assert rc == 3 and "registration needs a valid invite code (registration_closed)" in err
    joined = clients(server, "alice", "--register", "--invite", code, password=PASSWORD)
    joined.wait_for(r"\* online:")
    joined.end_input()
    rc, _, err = joined.finish()
    assert rc == 0, err
    wait_log(server, r"registered and logged in .*user=alice")
    usage = run_client("--no-tui", "--user", "alice", "--invite", code, config_home=tmp_path)
    assert usage.returncode == 2
    assert usage.stderr == "chat-client: --invite only goes with --register\n"


def _read_frame(conn: socket.socket) -> dict[str, Any]:
    (length,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
    return json.loads(conn.recv(length, socket.MSG_WAITALL))


def _send_frame(conn: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def closing_at_passwd(conn: socket.socket) -> None:
    """A scripted server (for `tls_peer.Peer`) that logs the client in, then closes the
    connection when the `passwd` comes, before any answer: the change may have happened."""
    auth = _read_frame(conn)
    _send_frame(conn, {"type": "auth_ok", "user": auth["user"], "features": []})
    _send_frame(conn, {"type": "roster", "seq": 1, "full": True, "users": [auth["user"]]})
    while (frame := _read_frame(conn))["type"] != "passwd":
        if frame["type"] == "ping":
            _send_frame(conn, {"type": "pong"})
    conn.close()


def test_passwd_with_the_connection_lost_before_the_answer_says_it_may_have_changed(
    tmp_path,
) -> None:
    peer = Peer(closing_at_passwd, None)
    try:
        args = ("--host", peer.host, "--port", str(peer.port), "--user", "alice", "--passwd")
        done = run_client(*args, config_home=tmp_path, stdin=f"{PASSWORD}\n{NEW}\n")
    finally:
        peer.close()
    assert done.returncode == 4
    assert done.stderr == (
        "chat-client: the connection was lost before the answer: the password may or may not "
        "have changed (try to log in with the new one)\n"
    )
