"""A conformance audit of the wire contract, from the outside (shared/protocol-v1*.md).

Each test here checks a statement of the contract that the rest of the suite checked
less than the contract says (or not at all from the outside), found by going through
every normative line of the three contract files. Each names its section. What the
suite already covered is not repeated here.

Everything runs against the real `chat-server` on 127.0.0.1 over raw sockets
(`tests/wire.py`); the operator's commands run as an operator types them, through
the installed `chat-server` script with nothing but the words of the contract and
`--data-dir`; the client's side runs the real `chat-client` against a scripted peer.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import (
    PASSWORD,
    assert_error,
    next_frame,
    online,
    register,
    request,
    send_msg,
)

from conftest import ServerProc, _wait_port, stop_servers
from tls_peer import Peer
from wire import WireClient, frame

#: The installed console script, as an operator (or an outside test) runs it.
CHAT_SERVER = str(Path(sys.executable).with_name("chat-server"))
CHAT_CLIENT = str(Path(sys.executable).with_name("chat-client"))


# --------------------------------------------------------------------------
# v1.1 section 4: `limit` (int 1..200, optional, default 50)
# --------------------------------------------------------------------------
def history(client: WireClient, rid: str, **fields: Any) -> dict[str, Any]:
    answer = request(client, {"type": "history", "id": rid, "with": "*", **fields})
    assert answer["type"] == "history" and answer["id"] == rid, answer
    assert set(answer) == {"type", "id", "messages", "more"}, answer
    return answer


def test_history_without_a_limit_is_the_50_newest_and_a_limit_of_200_gives_200(
    server: ServerProc,
) -> None:
    """The rest of the suite asked for 25 messages without a limit, which cannot tell a
    default of 50 from any default above 25."""
    alice = online(server, "alice")
    count = 230
    alice.send_raw(
        b"".join(frame({"type": "send", "id": i, "to": "*", "text": f"m{i}"}) for i in range(count))
    )
    ids = []
    for i in range(count):
        sent = next_frame(alice)
        assert sent["type"] == "sent" and sent["id"] == i, sent
        ids.append(sent["msg_id"])
    newest = history(alice, "default")
    assert [m["text"] for m in newest["messages"]] == [f"m{i}" for i in range(count - 50, count)]
    assert [m["id"] for m in newest["messages"]] == ids[-50:]
    assert newest["more"] is True
    widest = history(alice, "widest", limit=200)
    assert [m["id"] for m in widest["messages"]] == ids[-200:] and widest["more"] is True
    rest = history(alice, "rest", limit=200, before=ids[-200])
    assert [m["id"] for m in rest["messages"]] == ids[:-200] and rest["more"] is False
    one = history(alice, "one", limit=1)
    assert [m["id"] for m in one["messages"]] == ids[-1:] and one["more"] is True


# --------------------------------------------------------------------------
# v1 Framing: "Frames the server sends may be up to 16 MiB (a large roster);
# clients must accept that."
# --------------------------------------------------------------------------
MIB16 = 16 * 1024 * 1024


def _read_frame(conn: socket.socket) -> dict[str, Any]:
    header = conn.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        raise EOFError("the client closed")
    (length,) = struct.unpack(">I", header)
    return json.loads(conn.recv(length, socket.MSG_WAITALL))


def _big_roster() -> tuple[bytes, int]:
    """A full roster frame whose payload is exactly 16 MiB (padded with JSON spacing,
    which a receiver must accept), and the number of names in it."""
    head, tail = b'{"type":"roster","seq":1,"full":true,"users":[', b"]}"
    entry = 34  # '"user' + 27 digits + '",'
    count = (MIB16 - len(head) - len(tail)) // entry
    names = b",".join(b'"user%027d"' % i for i in range(count))
    payload = head + names + tail
    payload = payload[:-1] + b" " * (MIB16 - len(payload)) + b"}"
    assert len(payload) == MIB16
    return struct.pack(">I", len(payload)) + payload, count


def test_the_client_takes_a_roster_frame_of_16_mib(tmp_path: Path) -> None:
    """`chat-client` in line mode, against a scripted server that answers its login with
    a full roster of exactly 16 MiB: the client acks it (seq 1), shows every name, and
    ends its run normally."""
    big, count = _big_roster()
    seen: list[dict[str, Any]] = []

    def script(conn: socket.socket) -> None:
        conn.settimeout(30)
        auth = _read_frame(conn)
        seen.append(auth)
        conn.sendall(frame({"type": "auth_ok", "user": auth["user"]}) + big)
        while True:
            f = _read_frame(conn)
            seen.append(f)
            if f["type"] == "ping":
                conn.sendall(frame({"type": "pong"}))
            elif f["type"] == "bye":
                conn.sendall(frame({"type": "bye", "reason": "bye"}))
                return

    peer = Peer(script)
    try:
        done = subprocess.run(
            [
                CHAT_CLIENT,
                "--json",
                "--host",
                peer.host,
                "--port",
                str(peer.port),
                "--user",
                "alice",
                "--password",
                PASSWORD,
            ],
            input=b"",
            capture_output=True,
            timeout=60,
            env={**os.environ, "XDG_CONFIG_HOME": os.devnull},
        )
    finally:
        peer.close()
    assert done.returncode == 0, done.stderr.decode()
    assert seen[0]["type"] == "auth" and seen[1] == {"type": "roster_ack", "seq": 1}, seen[:2]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    (shown,) = [e for e in events if e["event"] == "online"]
    assert len(shown["users"]) == count and shown["users"][-1] == f"user{count - 1:027d}"


# --------------------------------------------------------------------------
# v1.2 section 8: the operator's commands, as the contract words them
# --------------------------------------------------------------------------
@pytest.fixture
def data_dir_server(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    """`chat-server --data-dir D` and nothing else that matters (its own defaults: the
    hash cost, the login throttle), started the way an operator starts it."""
    started: list[ServerProc] = []

    def start(*extra: str) -> ServerProc:
        data = tmp_path / "D"
        log = tmp_path / f"server{len(started)}.log"
        args = [CHAT_SERVER, "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0"]
        proc = subprocess.Popen(
            [*args, "--log-file", str(log), *extra],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        server = ServerProc(proc, "127.0.0.1", 0, data / "users.db", data / "server.key", log)
        started.append(server)
        server.port = _wait_port(server)
        return server

    yield start
    stop_servers(started)


def operator(*words: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`chat-server WORDS`: the words end with the options (`--data-dir D`)."""
    return subprocess.run(
        [CHAT_SERVER, *words], input=stdin, capture_output=True, text=True, timeout=60
    )


def done_ok(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def one_line_exit_1(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done


def login_reply(server: ServerProc, auth: dict[str, Any]) -> list[dict[str, Any]]:
    """A login's answer, and every frame up to the close when the answer is fatal."""
    c = server.client()
    c.send({"type": "auth", **auth})
    first = c.recv()
    if first["type"] == "error" and first["code"] == "banned":
        return [first, *c.expect_closed()]
    c.close()
    return [first]


def ends_with_bye(client: WireClient, reason: str) -> None:
    frames = client.expect_closed(10)
    assert frames and frames[-1] == {"type": "bye", "reason": reason}, frames


def test_the_operator_lines_act_on_a_server_started_with_a_data_dir(
    data_dir_server: Callable[..., ServerProc], tmp_path: Path
) -> None:
    """`chat-server user list --data-dir D` and its siblings, each word as the contract
    gives it, on a running server with its own defaults: exit 0 and the effect on the
    wire; `invite create` codes are what `--registration invite` takes."""
    d = str(tmp_path / "D")
    server = data_dir_server("--registration", "invite")
    names = ["bob", "Carol", "alice", "dave", "erin"]
    for name in names:
        code = done_ok(operator("invite", "create", "--data-dir", d))
        assert code.count("\n") == 1 and code.strip(), code
        c = server.client()
        c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True})
        c.send({"type": "bye"})
        assert c.expect_closed()[0]["code"] == "registration_closed"  # no code: refused
        reply = login_reply(
            server,
            {"user": name, "password": PASSWORD, "register": True, "invite": code.strip()},
        )
        assert reply == [{"type": "auth_ok", "user": name}], reply
        used = login_reply(
            server,
            {"user": name + "2", "password": PASSWORD, "register": True, "invite": code.strip()},
        )
        assert_error(used[0], "registration_closed")  # used up
    # "one registered name per line, sorted" (code-point order: see the report)
    assert done_ok(operator("user", "list", "--data-dir", d)) == "Carol\nalice\nbob\ndave\nerin\n"

    # user passwd: the first line of stdin; the user's tokens stop working
    c = server.client()
    c.send({"type": "auth", "user": "bob", "password": PASSWORD, "features": ["resume"]})
    token = c.recv()["token"]
    c.close()
    done_ok(operator("user", "passwd", "bob", "--data-dir", d, stdin="fresh one\nnot this\n"))
    assert_error(login_reply(server, {"user": "bob", "password": PASSWORD})[0], "bad_credentials")
    assert login_reply(server, {"user": "bob", "password": "fresh one"})[0]["type"] == "auth_ok"
    stale = {"user": "bob", "token": token, "features": ["resume"]}
    assert_error(login_reply(server, stale)[0], "bad_credentials")

    # user kick: bye "kicked", no ban
    carol = online(server, "Carol", register=False)
    done_ok(operator("user", "kick", "Carol", "--data-dir", d))
    ends_with_bye(carol, "kicked")
    assert login_reply(server, {"user": "Carol", "password": PASSWORD})[0]["type"] == "auth_ok"

    # user ban: bye "banned"; a login is `banned`, fatal; user unban lets it in again
    dave = online(server, "dave", register=False)
    done_ok(operator("user", "ban", "dave", "--data-dir", d))
    ends_with_bye(dave, "banned")
    refused = login_reply(server, {"user": "dave", "password": PASSWORD})
    assert len(refused) == 1, refused  # fatal: nothing follows, then the close
    assert_error(refused[0], "banned")
    done_ok(operator("user", "unban", "dave", "--data-dir", d))
    assert login_reply(server, {"user": "dave", "password": PASSWORD})[0]["type"] == "auth_ok"

    # user delete: bye "account_deleted", the name is gone
    erin = online(server, "erin", register=False)
    done_ok(operator("user", "delete", "erin", "--data-dir", d))
    ends_with_bye(erin, "account_deleted")
    assert done_ok(operator("user", "list", "--data-dir", d)) == "Carol\nalice\nbob\ndave\n"

    # one line on stderr and exit 1 for an unknown user
    for word in ("passwd", "delete", "ban", "unban", "kick"):
        one_line_exit_1(operator("user", word, "nobody", "--data-dir", d, stdin="pw\n"))

    # and on its files while it is stopped
    assert server.stop() == 0
    assert done_ok(operator("user", "list", "--data-dir", d)) == "Carol\nalice\nbob\ndave\n"
    one_line_exit_1(operator("user", "ban", "nobody", "--data-dir", d))
    code = done_ok(operator("invite", "create", "--data-dir", d)).strip()
    again = data_dir_server("--registration", "invite")
    reply = login_reply(
        again, {"user": "frank", "password": PASSWORD, "register": True, "invite": code}
    )
    assert reply == [{"type": "auth_ok", "user": "frank"}], reply


def test_the_users_and_key_files_of_a_data_dir_reach_its_running_server(
    data_dir_server: Callable[..., ServerProc], tmp_path: Path
) -> None:
    """ "given the same --data-dir (or --users-file and --key-file)": the two files of the
    folder name the same server as the folder does."""
    files = ["--users-file", str(tmp_path / "D" / "users.db")]
    files += ["--key-file", str(tmp_path / "D" / "server.key")]
    server = data_dir_server()
    register(server, "alice", "bob")
    bob = online(server, "bob", register=False)
    assert done_ok(operator("user", "list", *files)) == "alice\nbob\n"
    done_ok(operator("user", "kick", "bob", *files))
    ends_with_bye(bob, "kicked")
    one_line_exit_1(operator("user", "kick", "nobody", *files))


# --------------------------------------------------------------------------
# v1.2 sections 1 and 7: a connection that asks for nothing may use section 7
# --------------------------------------------------------------------------
def test_a_v11_connection_changes_its_password_and_deletes_its_account(
    server: ServerProc,
) -> None:
    """No `features` in its `auth`: `passwd` and `delete_account` still work, answered by
    `ok` {`id`}; its `sent` is v1.1's with `msg_id` added, and nothing else."""
    register(server, "alice")
    bob = online(server, "bob")
    alice = online(server, "alice", register=False)
    sent = send_msg(alice, ["bob", "nobody"], "hi", "s1")
    assert set(sent) == {"type", "id", "delivered", "missing", "queued", "msg_id"}, sent
    assert next_frame(bob)["type"] == "msg"
    answer = request(alice, {"type": "passwd", "id": 7, "old": PASSWORD, "new": "new one"})
    assert answer == {"type": "ok", "id": 7}, answer
    answer = request(alice, {"type": "passwd", "id": "x", "old": PASSWORD, "new": "other"})
    assert_error(answer, "bad_credentials", "x")
    alice.send({"type": "delete_account", "id": "del", "password": "new one"})
    frames = alice.expect_closed(10)
    rest = [f for f in frames if f["type"] != "roster"]
    assert rest == [{"type": "ok", "id": "del"}, {"type": "bye", "reason": "account_deleted"}]
    again = server.client()
    again.send({"type": "auth", "user": "alice", "password": "new one"})
    assert_error(again.recv(), "bad_credentials")


# --------------------------------------------------------------------------
# v1.2 section 6: "A token is valid ... from any number of sessions."
# --------------------------------------------------------------------------
def test_one_token_logs_in_several_sessions_at_once(server: ServerProc) -> None:
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "register": True})
    assert c.recv()["type"] == "auth_ok"
    c.close()
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "features": ["resume"]})
    token = c.recv()["token"]
    c.close()
    sessions = [server.client() for _ in range(3)]
    for s in sessions:  # every auth before any answer
        s.send({"type": "auth", "user": "alice", "token": token, "features": ["resume"]})
    for s in sessions:
        ok = s.recv()
        assert ok["type"] == "auth_ok" and ok["user"] == "alice", ok
        roster = s.recv()
        assert roster["type"] == "roster" and roster["full"] is True, roster
        s.send({"type": "roster_ack", "seq": roster["seq"]})
    for s in sessions:
        assert request(s, {"type": "ping"}) == {"type": "pong"}
    bob = online(server, "bob")
    send_msg(bob, ["alice"], "to every session")
    for s in sessions:
        got = next_frame(s)
        assert (got["type"], got["text"]) == ("msg", "to every session"), got


# --------------------------------------------------------------------------
# v1.1 section 5: the message store "is mode 0600" (while the server runs too)
# --------------------------------------------------------------------------
def test_every_file_of_the_running_servers_store_is_owner_only(server: ServerProc) -> None:
    """The suite checked the modes after a stop; SQLite's `-wal` and `-shm` exist only
    while the store is open, and they hold the newest pages."""
    register(server, "bob")
    alice = online(server, "alice")
    assert send_msg(alice, ["bob"], "kept for bob")["queued"] == ["bob"]
    folder = server.users_file.parent
    kept = [p for p in folder.iterdir() if p.name.startswith(("history.db", "users.db"))]
    assert any(p.name.endswith("-wal") for p in kept), kept
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in kept}
    assert set(modes.values()) == {0o600}, modes


# --------------------------------------------------------------------------
# v1.2 section 8: "`closed` answers an `auth` with `register: true` by
# `registration_closed`", and `invite` a missing code so: the name taken or not
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["closed", "invite"])
def test_a_registration_of_a_taken_name_is_registration_closed_too(
    start_server: Callable[..., ServerProc], mode: str
) -> None:
    """The suite asked with new names only; with a taken one, `user_exists` would tell an
    outsider which names exist on a server that takes no registrations."""
    first = start_server()
    register(first, "alice")
    assert first.stop() == 0
    server = start_server("--registration", mode)
    c = server.client()
    for password in (PASSWORD, "not hers"):
        c.send({"type": "auth", "user": "alice", "password": password, "register": True})
        assert_error(c.recv(), "registration_closed")
    c.send({"type": "auth", "user": "alice", "password": PASSWORD})
    assert c.recv() == {"type": "auth_ok", "user": "alice"}  # non-fatal, and no failed login
