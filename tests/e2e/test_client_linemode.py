"""`chat-client --no-tui` end to end: real client processes against the real server."""

from __future__ import annotations

import importlib.metadata
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from server_support import TOO_SHORT, online, refusing_registration, register, send_msg

from tls_peer import Peer

PASSWORD = "correct horse"


class LineClient:
    """A `chat-client --no-tui` process: write lines to it, wait for lines from it."""

    def __init__(
        self,
        server: Any,
        user: str,
        *extra: str,
        password: str | None = PASSWORD,
        env: dict[str, str] | None = None,
        port: int | None = None,
        host: str | None = None,
    ) -> None:
        args = [
            sys.executable,
            "-X",
            "faulthandler",  # SIGABRT prints every thread's stack (see `_why`)
            "-m",
            "chat.client",
            "--no-tui",
            "--host",
            host or server.host,
            "--port",
            str(port or server.port),
            "--user",
            user,
            *extra,
        ]
        if password is not None:
            args += ["--password", password]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # No config file of whoever runs the tests (a folder that cannot hold one).
            env={**os.environ, "XDG_CONFIG_HOME": os.devnull, **(env or {})},
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8").rstrip("\n"))

    def write(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """The first line (from the start of output) matching `pattern`."""
        regex = re.compile(pattern)
        for line in self.seen:
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if regex.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; got {self.seen}{self._why()}")

    def _why(self) -> str:
        """What the client was doing: its exit code and stderr, or, still running, every
        thread's stack (faulthandler on SIGABRT), so a rare hang says where it hung."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGABRT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode("utf-8", "replace")
        return f"\nclient exit {self.proc.returncode}, stderr:\n{err}"

    def finish(self, timeout: float = 15.0) -> tuple[int, list[str], str]:
        """Exit code, every stdout line, stderr text."""
        rc = self.proc.wait(timeout)
        time.sleep(0)  # let the pump thread drain what is left
        while True:
            try:
                self.seen.append(self.lines.get(timeout=0.5))
            except queue.Empty:
                break
        assert self.proc.stderr is not None
        return rc, self.seen, self.proc.stderr.read().decode("utf-8")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def clients():
    started: list[LineClient] = []

    def start(*args: Any, **kw: Any) -> LineClient:
        c = LineClient(*args, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_clear_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_two_clients_chat_to_all_one_person_and_a_group(server, clients) -> None:
    carol = online(server, "carol")
    bob = clients(server, "bob", "--register")
    bob.wait_for(r"\* online: carol$")
    alice = clients(server, "alice", "--register")
    alice.write("hello all", "@bob just for you", "@bob,carol a group")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    sent = [line[9:] for line in out if " > " in line]
    assert sent == [
        "> #1 delivered: bob, carol",
        "> #2 delivered: bob",
        "> #3 delivered: bob, carol",
    ]
    bob.wait_for(r"^\d\d:\d\d:\d\d \* alice joined$")
    bob.wait_for(r"^\d\d:\d\d:\d\d <alice> hello all$")
    bob.wait_for(r"^\d\d:\d\d:\d\d <alice> \[private\] just for you$")
    bob.wait_for(r"^\d\d:\d\d:\d\d <alice> \[group: bob, carol\] a group$")
    bob.wait_for(r"\* alice left$")
    texts = []
    while len(texts) < 2:
        frame = carol.recv_type("msg")
        texts.append((frame["to"], frame["text"]))
    assert texts == [("*", "hello all"), (["bob", "carol"], "a group")]


def test_sent_reports_name_the_input_line_they_answer(server, clients) -> None:
    """Blank and invalid lines are counted too: `#4` is the fourth line of stdin."""
    bob = online(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.write("first", "", "@bob,,x! not valid", "fourth", "@bob fifth", "@ghost sixth")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 5, err
    assert "line 3 not sent" in err
    assert [line[9:] for line in out if " > " in line] == [
        "> #1 delivered: bob",
        "> #4 delivered: bob",
        "> #5 delivered: bob",
        "> #6 delivered: nobody; not delivered to ghost (unknown)",
    ]
    assert [bob.recv_type("msg")["text"] for _ in range(3)] == ["first", "fourth", "fifth"]


def test_json_sent_ids_are_the_input_line_numbers(server, clients) -> None:
    register(server, "dave")
    alice = clients(server, "alice", "--register", "--json")
    alice.write("", "@dave offline one", "@ghost unknown one")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    sent = [json.loads(line) for line in out if '"event": "sent"' in line]
    assert [(s["id"], s["missing"], s["queued"]) for s in sent] == [
        (2, ["dave"], ["dave"]),
        (3, ["ghost"], []),
    ]


def test_json_says_every_line_refused_locally_on_stdout_too(server, clients) -> None:
    """A script that reads only the JSON stream learns of every line that was not sent."""
    bob = online(server, "bob")
    alice = clients(server, "alice", "--register", "--json")
    alice.write("first", "@bob,,x not valid", "@bob", "x" * 4097, "fifth")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 5, err
    objects = [json.loads(line) for line in out]
    refused = [o for o in objects if o["event"] == "local_error"]
    assert refused == [
        {"event": "local_error", "line": 2, "message": "not a valid user name: ''"},
        {"event": "local_error", "line": 3, "message": "nothing to send after the recipients"},
        {
            "event": "local_error",
            "line": 4,
            "message": "message too long (4097 characters, at most 4096)",
        },
    ]
    assert [o["id"] for o in objects if o["event"] == "sent"] == [1, 5]
    assert [line.split(" not sent")[0] for line in err.splitlines()] == [
        "chat-client: line 2",
        "chat-client: line 3",
        "chat-client: line 4",
    ]
    assert [bob.recv_type("msg")["text"] for _ in range(2)] == ["first", "fifth"]


def test_registering_an_existing_account_says_to_leave_out_register(server, clients) -> None:
    register(server, "alice")
    alice = clients(server, "alice", "--register")
    alice.end_input()
    rc, out, err = alice.finish()
    assert (rc, out) == (3, [])
    assert (
        one_clear_line(err)
        == "chat-client: account alice exists: leave out --register (user_exists)"
    )


def test_a_registration_the_server_refuses_shows_its_text(clients) -> None:
    """As the server's `--min-password` answers: `bad_request` with its own text."""
    peer = Peer(refusing_registration, None)
    try:
        dora = clients(SimpleNamespace(host=peer.host, port=peer.port), "dora", "--register")
        dora.end_input()
        rc, out, err = dora.finish()
    finally:
        peer.close()
    assert (rc, out) == (3, [])
    assert one_clear_line(err) == (f"chat-client: registration refused: {TOO_SHORT} (bad_request)")


def test_json_lines_carry_unicode_and_roster_changes(server, clients) -> None:
    bob = clients(server, "bob", "--register", "--json")
    bob.wait_for(r'"event": "online"')
    alice = clients(server, "alice", "--register")
    alice.write("@bob привет 你好 👋")
    alice.end_input()
    assert alice.finish()[0] == 0
    events = [json.loads(bob.wait_for(f'"event": "{kind}"')) for kind in ("roster", "msg")]
    assert events[0]["join"] == ["alice"]
    msg = events[1]
    assert (msg["from"], msg["to"], msg["text"]) == ("alice", ["bob"], "привет 你好 👋")
    assert isinstance(msg["ts"], float)


def test_exit_waits_until_every_message_is_answered_and_order_is_kept(server, clients) -> None:
    bob = online(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.write(*(f"m{i}" for i in range(300)))
    alice.end_input()
    rc, out, err = alice.finish(timeout=30)
    assert rc == 0, err
    assert sum(" > #" in line for line in out) == 300
    got = [bob.recv_type("msg")["text"] for _ in range(300)]
    assert got == [f"m{i}" for i in range(300)]


def test_lines_typed_before_login_are_sent_after_it(server, clients) -> None:
    bob = online(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.write("early bird")  # written at once, before the login can have finished
    alice.end_input()
    assert alice.finish()[0] == 0
    assert bob.recv_type("msg")["text"] == "early bird"


def test_password_can_come_from_the_environment(server, clients) -> None:
    register(server, "alice", password="from env")
    alice = clients(server, "alice", password=None, env={"CHAT_PASSWORD": "from env"})
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    assert out[0].endswith("* online: nobody else")


def test_wrong_password_is_one_line_and_exit_3(server, clients) -> None:
    register(server, "alice")
    alice = clients(server, "alice", password="wrong")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 3 and out == []
    assert one_clear_line(err) == (
        "chat-client: login refused: invalid user name or password (bad_credentials)"
    )


def test_refused_connection_is_one_line_and_exit_1(server, clients) -> None:
    port = closed_port()
    alice = clients(server, "alice", port=port)
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 1
    assert one_clear_line(err) == (
        f"chat-client: connection refused by 127.0.0.1:{port} (is chat-server running there?)"
    )


def test_unknown_host_is_one_line_and_exit_1(server, clients) -> None:
    alice = clients(server, "alice", host="no-such-host.invalid")
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 1
    assert one_clear_line(err).startswith("chat-client: cannot resolve host 'no-such-host.invalid'")


def test_full_server_is_one_line_and_exit_1(start_server, clients) -> None:
    server = start_server("--max-clients", "1")
    online(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 1
    assert one_clear_line(err) == (
        "chat-client: disconnected: the server closed the connection: server is full (server_full)"
    )


def test_no_password_and_no_terminal_is_one_line_and_exit_2(server, clients) -> None:
    alice = clients(server, "alice", password=None, env={"CHAT_PASSWORD": ""})
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 2
    assert "no password" in one_clear_line(err)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--port", "70000"], "--port must be 1..65535"),
        (["--user", "no spaces allowed"], "is not a valid user name"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], reason: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chat.client", "--no-tui", "--user", "a", "--password", "p", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert reason in one_clear_line(proc.stderr)


def test_bad_recipient_line_is_reported_the_rest_is_sent_exit_5(server, clients) -> None:
    bob = online(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.write("@not,,valid x", "still sent")
    alice.end_input()
    rc, _, err = alice.finish()
    assert rc == 5
    assert one_clear_line(err) == "chat-client: line 1 not sent: not a valid user name: ''"
    assert bob.recv_type("msg")["text"] == "still sent"


def test_server_shutdown_shows_bye_and_exits_4(server, clients) -> None:
    bob = clients(server, "bob", "--register")
    bob.wait_for(r"\* online:")
    assert server.stop() == 0
    bob.wait_for(r"\* server said bye: shutdown$")
    rc, _, err = bob.finish()
    assert rc == 4
    assert one_clear_line(err) == "chat-client: disconnected: the server said bye (shutdown)"


def wait_log(server: Any, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (m := re.search(pattern, server.log())):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    return m.group(0)


def test_client_says_bye_before_leaving(server, clients) -> None:
    alice = clients(server, "alice", "--register")
    alice.end_input()
    assert alice.finish()[0] == 0
    wait_log(server, r"closed fd=\d+ user=alice .*closed by the peer: bye")


def test_version_is_the_distributions_and_exit_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chat.client", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"chat-client {importlib.metadata.version('chat-epoll')}\n"
    assert proc.stderr == ""


# ----------------------------------------------------- v1.1: offline delivery and history
def test_sent_reports_queued_for_a_registered_offline_user_and_missing_for_an_unknown_one(
    server, clients
) -> None:
    register(server, "bob")
    alice = clients(server, "alice", "--register")
    alice.write("@bob,ghost are you there")
    alice.end_input()
    rc, out, err = alice.finish()
    assert rc == 0, err
    assert [line[9:] for line in out if " > " in line] == [
        "> #1 delivered: nobody; queued for bob (offline); not delivered to ghost (unknown)"
    ]


def test_an_offline_message_is_printed_marked_then_acked_so_the_next_login_has_none(
    server, clients
) -> None:
    register(server, "bob")
    alice = online(server, "alice")
    sent = send_msg(alice, ["bob"], "while you slept")
    assert sent["queued"] == ["bob"], sent
    first = clients(server, "bob")
    first.end_input()
    rc, out, err = first.finish()
    assert rc == 0, err
    assert [line[9:] for line in out if "<alice>" in line] == [
        "<alice> [offline] [private] while you slept"
    ]
    again = clients(server, "bob")
    again.end_input()
    rc, out, err = again.finish()
    assert rc == 0, err
    assert not [line for line in out if "<alice>" in line], out


def test_json_prints_the_offline_msg_as_the_server_sent_it(server, clients) -> None:
    register(server, "bob")
    alice = online(server, "alice")
    send_msg(alice, ["bob", "alice"], "group note")
    bob = clients(server, "bob", "--json")
    bob.end_input()
    rc, out, err = bob.finish()
    assert rc == 0, err
    (msg,) = [json.loads(line) for line in out if '"event": "msg"' in line]
    assert (msg["from"], msg["to"], msg["text"], msg["offline"]) == (
        "alice",
        ["bob", "alice"],
        "group note",
        True,
    )
    assert isinstance(msg["id"], int) and isinstance(msg["ts"], float)


def history_of(server: Any, clients: Any, user: str, *args: str) -> list[dict[str, Any]]:
    """`--history ... --json` as `user`: the msg objects printed (exit 0, nothing on stderr)."""
    c = clients(server, user, "--json", *args)
    rc, out, err = c.finish(timeout=30)
    assert (rc, err) == (0, ""), (rc, err, out)
    assert all(json.loads(line)["event"] == "msg" for line in out), out
    return [json.loads(line) for line in out]


def test_history_prints_the_last_n_of_all_oldest_first_over_several_pages(server, clients) -> None:
    carol = online(server, "carol")
    for i in range(230):
        send_msg(carol, "*", f"m{i}", msg_id=i)
    register(server, "bob")
    got = history_of(server, clients, "bob", "--history", "210")
    assert [m["text"] for m in got] == [f"m{i}" for i in range(20, 230)]
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)
    assert history_of(server, clients, "bob", "--history", "1") == got[-1:]


def test_history_prints_what_exists_when_fewer_than_n_in_the_human_format(server, clients) -> None:
    carol = online(server, "carol")
    send_msg(carol, "*", "only one")
    bob = clients(server, "bob", "--register", "--history", "50")
    rc, out, err = bob.finish()
    assert (rc, err) == (0, "")
    assert [line[9:] for line in out] == ["<carol> only one"]
    assert re.match(r"^\d\d:\d\d:\d\d <carol>", out[0])
    wait_log(server, r"closed fd=\d+ user=bob .*closed by the peer: bye")


def test_history_with_a_person_is_only_what_both_of_them_were_in(server, clients) -> None:
    alice, bob = online(server, "alice"), online(server, "bob")
    online(server, "carol")
    send_msg(alice, ["bob"], "to bob", msg_id=1)
    send_msg(alice, ["carol"], "to carol", msg_id=2)
    send_msg(alice, ["bob", "carol"], "to both", msg_id=3)
    send_msg(alice, "*", "to all", msg_id=4)
    bob.send({"type": "send", "id": 5, "to": ["alice"], "text": "bob answers"})
    assert bob.recv_type("sent")["id"] == 5  # alice's messages to bob come first
    got = history_of(server, clients, "alice", "--history", "10", "--with", "bob")
    assert [(m["from"], m["text"]) for m in got] == [
        ("alice", "to bob"),
        ("alice", "to both"),
        ("bob", "bob answers"),
    ]
    human = clients(server, "alice", "--history", "10", "--with", "bob")
    rc, out, _ = human.finish()
    assert rc == 0
    assert [line[9:] for line in out] == [
        "<alice> [private to bob] to bob",
        "<alice> [group: bob, carol] to both",
        "<bob> [private] bob answers",
    ]


def test_history_does_not_take_the_offline_messages_of_the_next_login(server, clients) -> None:
    register(server, "bob")
    alice = online(server, "alice")
    send_msg(alice, ["bob"], "keep me")
    assert history_of(server, clients, "bob", "--history", "5", "--with", "alice")[0]["text"] == (
        "keep me"
    )
    bob = clients(server, "bob")
    bob.end_input()
    rc, out, _ = bob.finish()
    assert rc == 0
    assert [line[9:] for line in out if "<alice>" in line] == [
        "<alice> [offline] [private] keep me"
    ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--history", "0"], "--history must be at least 1"),
        (["--with", "bob"], "--with only goes with --history N"),
        (["--history", "3", "--with", "not a name"], "is not a user name"),
    ],
)
def test_bad_history_options_are_one_line_and_exit_2(args: list[str], reason: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chat.client", "--user", "a", "--password", "p", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert reason in one_clear_line(proc.stderr)
