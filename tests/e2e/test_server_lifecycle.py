"""Connection and process life: ping, bye, shutdown, slow consumers, restarts, files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time

import pytest
from server_support import (
    PASSWORD,
    assert_error,
    messages,
    online,
    raw_client,
    request,
    roster_changes,
    send_msg,
)

from wire import Closed, frame

BYE_SHUTDOWN = {"type": "bye", "reason": "shutdown"}


# ---- ping / pong -------------------------------------------------------------


def test_ping_is_answered_with_pong_before_login(server) -> None:
    c = server.client()
    assert request(c, {"type": "ping"}) == {"type": "pong"}


def test_ping_is_answered_with_pong_in_chat(server) -> None:
    c = online(server, "alice")
    for _ in range(3):
        assert request(c, {"type": "ping"}) == {"type": "pong"}


def test_ping_is_answered_with_pong_while_the_roster_is_unacked(server) -> None:
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "register": True})
    assert c.recv()["type"] == "auth_ok" and c.recv()["type"] == "roster"
    assert request(c, {"type": "ping"}) == {"type": "pong"}


# ---- bye ---------------------------------------------------------------------


def _after_bye(frames: list[dict]) -> None:
    """Clarification 13: nothing but possibly one server bye, then the close."""
    assert frames in ([],) or (len(frames) == 1 and frames[0]["type"] == "bye"), frames


def test_client_bye_before_login_closes_the_connection(server) -> None:
    c = server.client()
    c.send({"type": "bye"})
    _after_bye(c.expect_closed())


def test_client_bye_in_chat_closes_and_others_see_a_leave(server) -> None:
    alice = online(server, "alice")
    bob = online(server, "bob")
    roster_changes(alice, join=["bob"])
    bob.send({"type": "bye"})
    _after_bye(bob.expect_closed())
    roster_changes(alice, leave=["bob"])


def test_nothing_but_a_bye_follows_a_client_bye(server) -> None:
    alice = online(server, "alice")
    bob = online(server, "bob")
    roster_changes(alice, join=["bob"])
    # frames sent in the same write after bye must go unanswered
    bob.send_raw(
        b"".join(
            frame(f)
            for f in (
                {"type": "bye"},
                {"type": "ping"},
                {"type": "send", "id": 1, "to": ["alice"], "text": "after bye"},
                {"type": "nonsense"},
            )
        )
    )
    _after_bye(bob.expect_closed())
    roster_changes(alice, leave=["bob"])
    assert alice.silent(0.2), "a send after bye was delivered"


def test_bye_with_a_roster_frame_in_flight_gets_no_roster_after_it(server) -> None:
    alice = online(server, "alice")
    online(server, "bob")
    delta = alice.recv()
    assert delta["type"] == "roster"
    alice.send({"type": "bye"})
    _after_bye(alice.expect_closed())


# ---- shutdown ----------------------------------------------------------------


def _clients_in_every_state(server):
    in_auth = server.client()
    assert request(in_auth, {"type": "ping"}) == {"type": "pong"}
    in_roster = server.client()
    in_roster.send({"type": "auth", "user": "rita", "password": PASSWORD, "register": True})
    assert in_roster.recv()["type"] == "auth_ok" and in_roster.recv()["type"] == "roster"
    chat = [online(server, "alice"), online(server, "bob")]
    roster_changes(chat[0], join=["bob"])
    return in_auth, in_roster, chat


def _last_frame_is_shutdown_bye(frames: list[dict]) -> None:
    assert frames, "closed without a bye"
    assert frames[-1] == BYE_SHUTDOWN, frames
    assert all(f["type"] == "roster" for f in frames[:-1]), frames


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_says_bye_to_every_connection_and_exits_zero(start_server, sig: int) -> None:
    server = start_server("--threads", "2")
    in_auth, in_roster, chat = _clients_in_every_state(server)
    server.proc.send_signal(sig)
    results = {}

    def read(name, c):
        results[name] = c.expect_closed(timeout=10)

    readers = [
        threading.Thread(target=read, args=(n, c))
        for n, c in (("auth", in_auth), ("roster", in_roster), ("alice", chat[0]), ("bob", chat[1]))
    ]
    for t in readers:
        t.start()
    for t in readers:
        t.join(15)
    assert results["auth"] == [BYE_SHUTDOWN]
    assert results["roster"] == [BYE_SHUTDOWN]
    _last_frame_is_shutdown_bye(results["alice"])
    _last_frame_is_shutdown_bye(results["bob"])
    for c in (in_auth, in_roster, *chat):
        c.close()
    assert server.proc.wait(10) == 0


def test_shutdown_says_bye_to_a_client_halfway_through_a_frame(start_server) -> None:
    server = start_server()
    c = online(server, "alice")
    c.send_raw(frame({"type": "ping"})[:5])
    time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    assert c.expect_closed() == [BYE_SHUTDOWN]
    c.close()
    assert server.proc.wait(10) == 0


def test_shutdown_stops_accepting_while_it_flushes(start_server) -> None:
    server = start_server("--shutdown-grace", "3")
    sleeper = _stuck_reader(server)  # keeps the server in its grace period
    c = online(server, "alice")
    server.proc.send_signal(signal.SIGTERM)
    assert c.expect_closed()[-1] == BYE_SHUTDOWN
    c.close()
    try:
        late = server.client()
        late.send({"type": "ping"})
        frames = late.expect_closed(timeout=5)
        assert {"type": "pong"} not in frames, "a connection was served after the bye"
        late.close()
    except (ConnectionError, Closed):
        pass  # refused or reset: not accepting any more
    sleeper.close()
    assert server.proc.wait(10) == 0


def _stuck_reader(server):
    """A logged-in client that stops reading with about 1 MB queued for it."""
    sleeper = raw_client(server, rcvbuf=4096)
    sleeper.login("sleepy", PASSWORD)
    assert request(sleeper, {"type": "ping"}) == {"type": "pong"}
    talker = online(server, "talker")
    for i in range(250):
        talker.send({"type": "send", "id": i, "to": ["sleepy"], "text": "z" * 4000})
    answered = 0
    while answered < 250:
        f = talker.recv(10)
        answered += f["type"] in ("sent", "error")
    talker.close()
    return sleeper


def test_shutdown_with_a_client_that_never_reads_still_exits_zero(start_server) -> None:
    server = start_server("--shutdown-grace", "1")
    _stuck_reader(server)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_persists_the_users_registered_before_it(start_server, sig: int) -> None:
    server = start_server()
    for name in ("alice", "bob", "carol"):
        online(server, name).close()
    assert server.stop(sig) == 0
    again = start_server(users_file=server.users_file, key_file=server.key_file)
    for name in ("alice", "bob", "carol"):
        online(again, name, register=False)


# ---- slow consumer -----------------------------------------------------------


def test_a_client_that_never_reads_is_dropped_and_others_keep_receiving(start_server) -> None:
    server = start_server("--max-outbuf", "65536", "--rate-limit", "0")
    slow = raw_client(server, rcvbuf=4096)
    slow.login("slow", PASSWORD)
    assert request(slow, {"type": "ping"}) == {"type": "pong"}
    fast = online(server, "fast")
    sender = online(server, "sender")
    roster_changes(fast, join=["sender"])
    text = "x" * 4000
    # 6 MB for each recipient: beyond what the kernel buffers (up to tcp_wmem's 4 MB on
    # the server side, 8 KB on the client side) and --max-outbuf can hold for the slow one
    total = 1500
    reader_result: dict[str, object] = {}

    def read_fast() -> None:
        try:
            reader_result["msgs"] = messages(fast, total, timeout=60)
        except BaseException as exc:
            reader_result["msgs"] = exc

    reader = threading.Thread(target=read_fast)
    reader.start()
    delivered_to_slow = 0
    for start in range(0, total, 10):  # 40 KB in flight: a reading client keeps up
        for i in range(start, start + 10):
            sender.send({"type": "send", "id": i, "to": "*", "text": text})
        for _ in range(10):
            f = sender.recv(10)
            while f["type"] == "roster":
                sender.send({"type": "roster_ack", "seq": f["seq"]})
                f = sender.recv(10)
            assert f["type"] == "sent", f
            delivered_to_slow += "slow" in f["delivered"]
    reader.join(60)
    got = reader_result["msgs"]
    assert not isinstance(got, BaseException), got
    assert [m["text"] for m in got] == [text] * total  # type: ignore[union-attr]
    assert delivered_to_slow < total, "the slow client was never dropped"
    _drained_to_eof(slow)


def _drained_to_eof(client) -> None:
    """The dropped client, once it reads again, finds the connection closed."""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            client.recv(5)
    except Closed:
        return
    raise AssertionError("the slow client's connection stayed open")


# ---- files and restarts ------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_missing_key_file_is_created_with_32_bytes_mode_0600(server) -> None:
    assert server.key_file.stat().st_size == 32
    assert _mode(server.key_file) == 0o600


def test_users_file_is_mode_0600_and_holds_no_name_or_password_in_clear(server) -> None:
    online(server, "zanzibar", password="hunter2-secret")
    data = server.users_file.read_bytes()
    assert _mode(server.users_file) == 0o600
    assert b"zanzibar" not in data and b"hunter2-secret" not in data


def test_restart_with_the_same_key_keeps_every_account(start_server) -> None:
    first = start_server()
    online(first, "alice").close()
    online(first, "bob", password="other pw").close()
    assert first.stop() == 0
    second = start_server(users_file=first.users_file, key_file=first.key_file)
    online(second, "alice", register=False)
    online(second, "bob", password="other pw", register=False)
    c = second.client()
    wrong = request(c, {"type": "auth", "user": "alice", "password": "nope"})
    assert_error(wrong, "bad_credentials")
    taken = request(c, {"type": "auth", "user": "alice", "password": "x", "register": True})
    assert_error(taken, "user_exists")


def test_restart_with_a_wrong_key_refuses_and_leaves_the_users_file_alone(
    start_server, tmp_path
) -> None:
    first = start_server()
    online(first, "alice").close()
    assert first.stop() == 0
    before_bytes = first.users_file.read_bytes()
    before_mode = _mode(first.users_file)
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(os.urandom(32))
    wrong_key.chmod(0o600)
    second = start_server(users_file=first.users_file, key_file=wrong_key, wait=False)
    try:
        code = second.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the server kept running with a wrong key")
    err = second.proc.stderr.read().decode("utf-8", "replace")
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "key" in err.lower() or "decrypt" in err.lower(), err
    assert first.users_file.read_bytes() == before_bytes
    assert _mode(first.users_file) == before_mode


def test_an_acknowledged_registration_survives_sigkill(start_server) -> None:
    first = start_server()
    clients = [first.client() for _ in range(5)]
    for i, c in enumerate(clients):
        c.send({"type": "auth", "user": f"user{i}", "password": f"pw{i}", "register": True})
    for i, c in enumerate(clients):
        assert c.recv() == {"type": "auth_ok", "user": f"user{i}"}
    first.proc.kill()  # right after the last auth_ok
    first.proc.wait(10)
    second = start_server(users_file=first.users_file, key_file=first.key_file)
    for i in range(5):
        online(second, f"user{i}", password=f"pw{i}", register=False)


def test_sigkill_during_a_burst_of_registrations_loses_no_acknowledged_account(
    start_server,
) -> None:
    first = start_server("--threads", "4")
    acked: list[str] = []
    clients = [first.client() for _ in range(20)]
    for i, c in enumerate(clients):
        c.send({"type": "auth", "user": f"u{i}", "password": "pw", "register": True})
    for i, c in enumerate(clients[:10]):
        assert c.recv()["type"] == "auth_ok"
        acked.append(f"u{i}")
    first.proc.kill()  # half of them acknowledged, the rest maybe in flight
    first.proc.wait(10)
    for i, c in enumerate(clients[10:], start=10):
        try:
            if c.recv(1)["type"] == "auth_ok":
                acked.append(f"u{i}")
        except (Closed, TimeoutError, ConnectionError):
            pass
    second = start_server(users_file=first.users_file, key_file=first.key_file)
    for name in acked:
        online(second, name, password="pw", register=False)


def test_a_message_after_restart_flows_between_returning_users(start_server) -> None:
    first = start_server()
    online(first, "alice").close()
    online(first, "bob").close()
    first.stop()
    second = start_server(users_file=first.users_file, key_file=first.key_file)
    bob = online(second, "bob", register=False)
    alice = online(second, "alice", register=False)
    roster_changes(bob, join=["alice"])
    assert send_msg(alice, ["bob"], "back again")["delivered"] == ["bob"]
    assert messages(bob, 1)[0]["text"] == "back again"
