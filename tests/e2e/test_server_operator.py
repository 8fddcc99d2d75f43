"""The operator's commands (protocol v1.2 section 8), as an operator types them.

The real `chat-server` CLI, in its own process, against a real server on a
loopback port (through its control socket) and against the files of a
stopped one; what the clients see is read over real sockets.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_support import PASSWORD, messages, online, register, request, roster_changes, send_msg

from chat.shared.errors import Refusal
from conftest import ServerProc, launch
from wire import WireClient


def cli(
    server: ServerProc, *words: str, stdin: str = "", extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`chat-server WORDS` with the server's own file options, from its folder."""
    args = [sys.executable, "-m", "chat.server", *words]
    args += ["--users-file", str(server.users_file), "--key-file", str(server.key_file)]
    args += ["--hash-cost", "10", *extra]
    return subprocess.run(
        args,
        cwd=server.users_file.parent,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit 1, one line on stderr saying `text`, nothing on stdout."""
    assert done.returncode == 1, done
    assert done.stdout == "", done
    assert done.stderr.count("\n") == 1 and text in done.stderr, done


def ended_with(client: WireClient, reason: str) -> None:
    """The connection's last frame is `bye` with `reason`, then EOF."""
    frames = client.expect_closed(10)
    assert frames and frames[-1] == {"type": "bye", "reason": reason}, frames


BANNED = {"type": "error", "code": "banned", "message": "this account is banned"}


def login_answer(server: ServerProc, name: str, password: str = PASSWORD) -> list[dict]:
    """What a login gets: its answer, and up to the end when it ends the connection."""
    c = server.client()
    c.send({"type": "auth", "user": name, "password": password})
    first = c.recv()
    if first.get("code") == "banned":  # fatal (v1.2 section 8): nothing after
        return [first, *c.expect_closed()]
    return [first]


# --------------------------------------------------------------------------
# user list
# --------------------------------------------------------------------------
def test_user_list_prints_every_name_sorted_running_and_stopped(server: ServerProc) -> None:
    assert ok(cli(server, "user", "list")) == ""
    register(server, "carol", "Alice", "bob")
    assert ok(cli(server, "user", "list")) == "Alice\nbob\ncarol\n"
    assert server.stop() == 0
    assert ok(cli(server, "user", "list")) == "Alice\nbob\ncarol\n"  # the files, locked


# --------------------------------------------------------------------------
# user passwd
# --------------------------------------------------------------------------
def test_passwd_takes_the_first_line_of_stdin(server: ServerProc) -> None:
    register(server, "alice")
    keep = online(server, "alice", register=False)
    assert ok(cli(server, "user", "passwd", "alice", stdin="new secret\nnot this\n")) == ""
    assert login_answer(server, "alice")[-1]["code"] == "bad_credentials"
    assert login_answer(server, "alice", "new secret") == [{"type": "auth_ok", "user": "alice"}]
    assert request(keep, {"type": "ping"}) == {"type": "pong"}  # sessions stay
    assert server.stop() == 0
    assert ok(cli(server, "user", "passwd", "alice", stdin="from the files")) == ""
    after = launch(server.users_file.parent, log_name="after.log")
    try:
        assert login_answer(after, "alice", "from the files")[0]["type"] == "auth_ok"
    finally:
        after.stop()
    for text in ("new secret", "from the files"):
        assert text not in server.log() and text not in after.log()


def test_passwd_without_a_password_or_beyond_the_bounds_is_refused(server: ServerProc) -> None:
    register(server, "alice")
    refused(cli(server, "user", "passwd", "alice", stdin=""), "no new password")
    refused(cli(server, "user", "passwd", "alice", stdin="x" * 257 + "\n"), "longer than 256")
    assert login_answer(server, "alice")[0]["type"] == "auth_ok"  # unchanged


# --------------------------------------------------------------------------
# delete, ban, unban, kick
# --------------------------------------------------------------------------
def test_delete_ends_every_session_drops_the_queue_and_frees_the_name(server: ServerProc) -> None:
    register(server, "alice", "bob")
    alice = online(server, "alice", register=False)
    send_msg(alice, ["bob"], "for bob while away")  # queued for bob
    bob1, bob2 = server.client(), server.client()
    for bob in (bob1, bob2):  # each gets the offline message (not acknowledged)
        bob.login("bob", PASSWORD, register=False)
        assert messages(bob, 1)[0]["text"] == "for bob while away"
    roster_changes(alice, join=["bob"])
    assert ok(cli(server, "user", "delete", "bob")) == ""
    ended_with(bob1, "account_deleted")
    ended_with(bob2, "account_deleted")
    roster_changes(alice, leave=["bob"])
    assert "bob" not in ok(cli(server, "user", "list")).split()
    assert login_answer(server, "bob")[0]["code"] == "bad_credentials"
    register(server, "bob", password="another one")  # the name is free again
    fresh = server.client()
    fresh.login("bob", "another one", register=False)
    assert request(fresh, {"type": "ping"}) == {"type": "pong"}  # no old offline message


def test_ban_ends_the_sessions_and_refuses_logins_until_unban(server: ServerProc) -> None:
    register(server, "alice", "mallory")
    mallory = online(server, "mallory", register=False)
    assert ok(cli(server, "user", "ban", "mallory")) == ""
    ended_with(mallory, "banned")
    # A banned account's login (with its password) is `banned`, fatal: nothing follows.
    assert login_answer(server, "mallory") == [BANNED]
    # A wrong password tells nothing of the ban.
    assert login_answer(server, "mallory", "wrong")[0]["code"] == "bad_credentials"
    assert server.stop() == 0  # durable: still banned after a restart
    again = launch(server.users_file.parent, log_name="again.log")
    try:
        assert login_answer(again, "mallory") == [BANNED]
        assert ok(cli(again, "user", "unban", "mallory")) == ""
        assert login_answer(again, "mallory") == [{"type": "auth_ok", "user": "mallory"}]
    finally:
        again.stop()


def test_kick_ends_the_sessions_without_a_ban(server: ServerProc) -> None:
    register(server, "alice", "bob")
    alice, bob = online(server, "alice", register=False), online(server, "bob", register=False)
    assert ok(cli(server, "user", "kick", "bob")) == ""
    ended_with(bob, "kicked")
    assert request(alice, {"type": "ping"}) == {"type": "pong"}  # nobody else
    assert login_answer(server, "bob")[0]["type"] == "auth_ok"  # may come back


@pytest.mark.parametrize("words", [("passwd",), ("delete",), ("ban",), ("unban",), ("kick",)])
def test_an_unknown_user_is_one_line_and_exit_1_running_and_stopped(
    server: ServerProc, words: tuple[str, ...]
) -> None:
    register(server, "alice")
    refused(cli(server, "user", *words, "nobody", stdin="pw\n"), "no such user: nobody")
    assert server.stop() == 0
    refused(cli(server, "user", *words, "nobody", stdin="pw\n"), "no such user: nobody")


def test_commands_on_a_stopped_server_change_its_files(server: ServerProc) -> None:
    register(server, "alice", "bob", "carol")
    assert server.stop() == 0
    assert ok(cli(server, "user", "ban", "bob")) == ""
    assert ok(cli(server, "user", "delete", "carol")) == ""
    assert ok(cli(server, "user", "kick", "alice")) == ""  # nobody is connected: nothing to do
    after = launch(server.users_file.parent, log_name="after.log")
    try:
        assert ok(cli(after, "user", "list")) == "alice\nbob\n"
        assert login_answer(after, "bob")[-1]["type"] in ("bye", "error")
        assert login_answer(after, "alice")[0]["type"] == "auth_ok"
    finally:
        after.stop()


def test_a_running_server_is_never_bypassed(server: ServerProc) -> None:
    """The files are changed only under the folder's lock: a server that holds it but does
    not answer (its socket removed by hand) is not written behind its back."""
    register(server, "alice")
    (server.users_file.parent / "control.sock").unlink()
    refused(cli(server, "user", "list"), "does not answer on its control socket")


# --------------------------------------------------------------------------
# invite create, status
# --------------------------------------------------------------------------
def test_invite_create_prints_one_code(server: ServerProc) -> None:
    out = ok(cli(server, "invite", "create", extra=("--uses", "3", "--days", "7")))
    assert out.count("\n") == 1 and len(out.strip()) >= 22 and out.strip().isascii()
    second = ok(cli(server, "invite", "create"))
    assert second != out
    assert out.strip() not in server.log() and second.strip() not in server.log()
    assert server.stop() == 0
    assert ok(cli(server, "invite", "create")).count("\n") == 1  # on the files too


def test_an_invite_code_registers_as_many_accounts_as_its_uses(start_server) -> None:
    """`--registration invite` (v1.2 section 8): a code is used up by the registrations that
    succeed; one that fails (a name taken) gives its use back; an unknown or used-up code is
    `registration_closed`, which is no failed login."""
    server = start_server("--registration", "invite")
    closed = {"type": "error", "code": "registration_closed", "message": Refusal.INVITE_NEEDED}

    def join(name: str, code: str | None) -> dict:
        c = server.client()
        try:
            auth = {"type": "auth", "user": name, "password": PASSWORD, "register": True}
            c.send(auth if code is None else auth | {"invite": code})
            return c.recv()
        finally:
            c.close()

    once = ok(cli(server, "invite", "create")).strip()
    assert join("newbie", "not-a-code") == closed
    assert join("newbie", once) == {"type": "auth_ok", "user": "newbie"}
    assert join("second", once) == closed  # used up
    twice = ok(cli(server, "invite", "create", extra=("--uses", "2"))).strip()
    assert join("newbie", twice)["code"] == "user_exists"  # its use is given back
    assert join("second", twice) == {"type": "auth_ok", "user": "second"}
    assert join("third", twice) == {"type": "auth_ok", "user": "third"}
    assert join("fourth", twice) == closed
    assert once not in server.log() and twice not in server.log()


def test_status_says_what_the_server_is_doing(server: ServerProc) -> None:
    register(server, "alice", "bob")
    keep = [
        online(server, "alice", register=False),
        online(server, "bob", register=False),
        server.client(),
    ]
    send_msg(keep[0], ["bob"], "hello")
    text = ok(cli(server, "status"))
    facts = dict(line.split(": ", 1) for line in text.splitlines())
    assert facts["version"] and facts["mode"] == "alone" and facts["nodes"] == "1"
    assert facts["connections"] == "3" and facts["logged in"] == "2"
    assert facts["users online"] == "2" and facts["accounts"] == "2"
    assert int(facts["messages stored"]) >= 1
    assert int(facts["uptime seconds"].split()[0]) >= 0
    assert int(facts["store bytes"].split()[0]) > 0
    as_json = json.loads(ok(cli(server, "status", extra=("--json",))))
    assert as_json["connections"] == 3 and as_json["accounts"] == 2
    assert server.stop() == 0
    refused(cli(server, "status"), "no chat-server is running")


# --------------------------------------------------------------------------
# the control socket itself
# --------------------------------------------------------------------------
def _control(server: ServerProc) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    path = server.users_file.parent / "control.sock"
    if len(os.fsencode(str(path))) <= 107:
        sock.connect(str(path))
        return sock
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)  # as the server does
    try:
        sock.connect(f"/proc/self/fd/{fd}/control.sock")
    finally:
        os.close(fd)
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_the_control_socket_is_owner_only_and_gone_after_stop(server: ServerProc) -> None:
    path = server.users_file.parent / "control.sock"
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert server.stop() == 0
    assert not path.exists()


def test_an_unknown_request_is_one_line_of_error(server: ServerProc) -> None:
    for sent in (b'{"cmd": "shutdown now"}\n', b"user list\n", b'["user list"]\n'):
        sock = _control(server)
        sock.sendall(sent)
        answer = _answer(sock)
        sock.close()
        assert answer.count(b"\n") == 1, answer
        reply = json.loads(answer)
        assert reply["ok"] is False and reply["error"], reply
    assert ok(cli(server, "user", "list")) == ""  # and it goes on serving


def test_a_silent_client_is_closed_after_5_s_and_holds_nobody(server: ServerProc) -> None:
    register(server, "alice")
    silent = _control(server)
    started = time.monotonic()
    assert ok(cli(server, "user", "list")) == "alice\n"  # served meanwhile
    assert time.monotonic() - started < 4
    assert silent.recv(1) == b""  # closed by the server
    waited = time.monotonic() - started
    assert 4.5 <= waited <= 8, waited
    silent.close()


def test_a_long_data_folder_still_has_its_control_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(os.fsencode(deep / "control.sock")) > 107
    server = launch(deep)
    try:
        register(server, "alice")
        assert ok(cli(server, "user", "list")) == "alice\n"
        assert ok(cli(server, "user", "kick", "alice")) == ""
    finally:
        server.stop()


def test_a_killed_servers_stale_socket_is_no_obstacle(server: ServerProc) -> None:
    import signal

    register(server, "alice")
    server.stop(signal.SIGKILL)
    assert (server.users_file.parent / "control.sock").exists()  # left behind
    assert ok(cli(server, "user", "list")) == "alice\n"  # nobody answers: the files
    again = launch(server.users_file.parent, log_name="again.log")
    try:
        assert ok(cli(again, "user", "kick", "alice")) == ""
        assert "control socket" in again.log()
    finally:
        again.stop()


# --------------------------------------------------------------------------
# the audit log
# --------------------------------------------------------------------------
def test_every_change_is_one_audit_line_with_who_and_never_a_password(server: ServerProc) -> None:
    register(server, "alice", "bob")
    ok(cli(server, "user", "passwd", "alice", stdin="sekrit-new-pass\n"))
    ok(cli(server, "user", "ban", "bob"))
    ok(cli(server, "user", "unban", "bob"))
    ok(cli(server, "user", "kick", "bob"))
    code = ok(cli(server, "invite", "create")).strip()
    ok(cli(server, "user", "delete", "bob"))
    cli(server, "user", "ban", "nobody")
    lines = [line for line in server.log().splitlines() if " audit: " in line]
    events = [line.split(" audit: ", 1)[1].split()[0] for line in lines]
    assert events == [
        "register",
        "register",
        "passwd",
        "ban",
        "unban",
        "kick",
        "invite_create",
        "delete",
        "refused",
    ], lines
    me = f"by=operator:uid={os.geteuid()},pid="
    assert all(me in line for line in lines[2:]), lines
    assert "user=alice peer=127.0.0.1:" in lines[0]
    assert "user=bob" in lines[3] and "sessions=0" in lines[3]
    log = server.log()
    assert "sekrit-new-pass" not in log and code not in log and PASSWORD not in log
