"""Defences of the v2 core, judged from outside: races, logs, deadlines, memory, hashing,
slots, reply order, goodbyes and the login throttle (issue 8, defects 1, 3, 4, 10-17).

Every test starts the real server on a loopback port and speaks the protocol
over real sockets (tests/wire.py). Times are asserted with room for a busy
2-core machine: waits are generous, the bounds are what the behaviour needs.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from server_support import (
    PASSWORD,
    assert_error,
    fatal,
    is_closed,
    next_frame,
    online,
    raw_client,
    register,
    request,
    roster_changes,
    wait_for,
)

from wire import Closed, WireClient, frame, frames_until_eof

#: Lines that must never be in a server log: a protocol bug, a crash, a task that died.
BAD_LOG = re.compile(
    r"LocalProtocolError|Traceback|\bERROR\b"
    r"|(worker task|mailbox handler|end of tick|after_tick|hash job) failed"
)
BYE_SHUTDOWN = {"type": "bye", "reason": "shutdown"}


# ---- helpers -------------------------------------------------------------------


def auth(user: str, password: str, register: bool = False) -> dict[str, Any]:
    return {"type": "auth", "user": user, "password": password, "register": register}


def reset(c: WireClient) -> None:
    """Close with SO_LINGER 0: the kernel sends RST at once, not FIN."""
    with contextlib.suppress(OSError):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def wait_log(server: Any, pattern: str, count: int = 1, timeout: float = 15.0) -> str:
    """The log once `pattern` (a regex) matches `count` times; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, log := server.log())) < count:
        assert time.monotonic() < deadline, f"{pattern!r} x{count} not in log:\n{log[-3000:]}"
        time.sleep(0.05)
    return log


def assert_clean_log(server: Any) -> None:
    lines = server.log().splitlines()
    first = next((i for i, line in enumerate(lines) if BAD_LOG.search(line)), None)
    assert first is None, "\n".join(lines[first : first + 40])


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the largest resident set the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc/PID/status")


def pinged(server: Any) -> WireClient:
    """A connection that is accepted for sure (its ping was answered) and not logged in."""
    c = server.client()
    assert request(c, {"type": "ping"}) == {"type": "pong"}
    return c


def answer_in(c: WireClient, obj: dict[str, Any], timeout: float = 20.0) -> tuple[float, Any]:
    """(seconds until the first frame after sending `obj`, that frame)."""
    start = time.monotonic()
    c.send(obj)
    f = c.recv(timeout=timeout)
    return time.monotonic() - start, f


# ---- defect 1: the auth/reset race -------------------------------------------------


def test_wrong_password_then_reset_logs_no_protocol_error_and_the_server_goes_on(
    start_server,
) -> None:
    # The old core failed a login on a connection the reset had already closed:
    # "LocalProtocolError: auth failure outside AUTH" as a failed worker task.
    server = start_server()
    register(server, "alice")
    wrong = 0
    for i in range(30):
        c = server.client()
        c.send(auth("alice", "not the password"))
        reset(c)
        wrong += 1
        c = server.client()
        if i % 3 == 0:  # a good login, reset before its auth_ok is read
            c.send(auth("alice", PASSWORD))
            reset(c)
        elif i % 3 == 1:  # a good login and a bye in one write
            c.send_raw(frame(auth("alice", PASSWORD)) + frame({"type": "bye"}))
            c.expect_closed(timeout=15)
            c.close()
        else:  # a wrong password and a bye in one write, then a reset
            c.send_raw(frame(auth("alice", "still wrong")) + frame({"type": "bye"}))
            reset(c)
            wrong += 1
    # Past the address's free failures the throttle delays each check (up to 2 s):
    # the last login waits its turn, then every delayed check has run or soon will.
    last = server.client()
    last.send(auth("alice", PASSWORD))
    assert last.recv(timeout=20) == {"type": "auth_ok", "user": "alice"}
    roster = last.recv()
    assert roster["type"] == "roster" and roster["full"] is True, roster
    last.send({"type": "roster_ack", "seq": roster["seq"]})
    assert request(last, {"type": "ping"}) == {"type": "pong"}
    checked = wait_for(lambda: server.log().count("login failed") >= wrong, timeout=15)
    assert server.proc.poll() is None
    assert_clean_log(server)
    assert checked, "not every wrong password was checked (and logged)"


# ---- defect 3: failed logins are logged, passwords never -------------------------


def test_a_failed_login_is_logged_at_info_with_peer_and_reason_and_never_the_password(
    start_server,
) -> None:
    good, bad = "Quokka-7f3e-GOOD-pw", "Zebra-91ad-WRONG-pw"
    server = start_server()
    c = server.client()
    c.login("bob", good)
    c.close()
    c = server.client()
    port = c.sock.getsockname()[1]
    c.send(auth("bob", bad))
    assert_error(c.recv(), "bad_credentials")
    c.send(auth("nosuchuser", bad))
    assert_error(c.recv(), "bad_credentials")
    log = wait_log(server, rf"INFO .*login failed .*peer=127\.0\.0\.1:{port}\b.*user=nosuchuser")
    line = next(ln for ln in log.splitlines() if "login failed" in ln and "user=bob" in ln)
    assert re.search(rf" INFO .*peer=127\.0\.0\.1:{port}\b.*user=bob: bad credentials", line), line
    c.send({"type": "bye"})
    c.expect_closed()
    assert server.stop() == 0
    everything = server.log() + (server.proc.stderr.read().decode() if server.proc.stderr else "")
    assert good not in everything and bad not in everything


# ---- defect 10: slowloris --------------------------------------------------------


def test_a_frame_trickled_byte_by_byte_is_cut_off_at_the_frame_deadline(start_server) -> None:
    # The old server reset its idle timer at every byte: such a frame was never cut off.
    server = start_server("--frame-timeout", "2")
    c = online(server, "slow")
    c.send_raw(struct.pack(">I", 100))  # a 100-byte frame announced...
    started = time.monotonic()
    frames: list[dict[str, Any]] = []
    closed_after = None
    while time.monotonic() - started < 10:
        with contextlib.suppress(OSError):
            c.send_raw(b" ")  # ...and one byte of it per 0.5 s
        try:
            frames.append(c.recv(timeout=0.5))
        except TimeoutError:
            continue
        except Closed:
            closed_after = time.monotonic() - started
            break
    assert closed_after is not None, f"still open after 10 s of trickling; got {frames}"
    assert frames and frames[-1]["type"] == "error" and frames[-1]["code"] == "timeout", frames
    assert all(f["type"] == "roster" for f in frames[:-1]), frames
    # The deadline is checked once a second: 2 s, plus up to 1 s, plus a busy machine.
    assert 1.9 <= closed_after <= 2 + 3, closed_after


def test_a_connection_that_pings_but_never_logs_in_is_timed_out(start_server) -> None:
    # The old server let a connection stay in AUTH as long as it pinged.
    server = start_server("--auth-timeout", "2")
    member = online(server, "member")  # logged in at once: the deadline is not its own
    lurker = server.client()
    started = time.monotonic()
    frames: list[dict[str, Any]] = []
    error_at = None
    while time.monotonic() - started < 10:
        with contextlib.suppress(OSError):
            lurker.send({"type": "ping"})
        assert request(member, {"type": "ping"}) == {"type": "pong"}
        try:
            frames.append(lurker.recv(timeout=0.5))
        except TimeoutError:
            continue
        except Closed:
            break
        if frames[-1]["type"] == "error":
            error_at = time.monotonic() - started
    assert error_at is not None, f"a connection stayed in AUTH for 10 s: {frames[-3:]}"
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "timeout", frames
    assert frames[:-1] and all(f == {"type": "pong"} for f in frames[:-1]), frames
    assert is_closed(lurker)
    # The deadline is checked once a second: 2 s, plus up to 1 s, plus a busy machine.
    assert 1.9 <= error_at <= 2 + 3, error_at
    # The logged-in client outlived the login deadline and is still served.
    assert time.monotonic() - started > 2.5
    assert request(member, {"type": "ping"}) == {"type": "pong"}


# ---- defect 11: shutdown under load ------------------------------------------------


class Crowd:
    """Logged-in clients, some sending continuously, each read by its own thread."""

    def __init__(self, server: Any, names: list[str], senders: int, register: bool) -> None:
        self.clients: dict[str, WireClient] = {}
        for name in names:
            c = server.client()
            c.login(name, PASSWORD, register=register)
            self.clients[name] = c
        self.lurkers = [pinged(server) for _ in range(5)]  # in AUTH at the signal
        self.senders = names[:senders]
        self.quiet = names[senders:]
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.sent: dict[str, int] = dict.fromkeys(self.senders, 0)
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(name, c), daemon=True)
            for name, c in self.clients.items()
        ]
        for t in self.threads:
            t.start()

    def _run(self, name: str, c: WireClient) -> None:
        frames: list[dict[str, Any]] = []
        partner = self.quiet[hash(name) % len(self.quiet)]
        sending = name in self.sent
        in_flight = 0
        n = 0
        try:
            while True:
                while sending and in_flight < 64:
                    try:
                        c.send({"type": "send", "id": n, "to": [partner], "text": f"{name} {n}"})
                    except OSError:
                        sending = False
                        break
                    n += 1
                    in_flight += 1
                f = c.recv(timeout=30)
                frames.append(f)
                if f["type"] == "roster":
                    with contextlib.suppress(OSError):
                        c.send({"type": "roster_ack", "seq": f["seq"]})
                elif f["type"] in ("sent", "error") and "id" in f:
                    in_flight -= 1
                    self.sent[name] = self.sent.get(name, 0) + (f["type"] == "sent")
                elif f["type"] == "bye":
                    sending = False
        except Closed:
            pass
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(f"{name}: {exc!r}")
        self.frames[name] = frames

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(deadline - time.monotonic(), 0.01))


def test_sigterm_under_load_says_bye_last_to_everyone_without_a_traceback(start_server) -> None:
    # One old run in five logged tracebacks: workers answered frames while the loop closed.
    names = [f"u{i:03d}" for i in range(95)]
    for run in range(3):
        server = start_server("--rate-limit", "0", "--threads", "2")
        crowd = Crowd(server, names, senders=25, register=run == 0)
        assert wait_for(lambda c=crowd: all(v >= 20 for v in c.sent.values()), timeout=20)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        lurker_frames = [c.expect_closed(timeout=15) for c in crowd.lurkers]
        crowd.join(20)
        assert server.proc.wait(15) == 0, f"run {run}"
        assert not crowd.errors, crowd.errors[:5]
        assert set(crowd.frames) == set(names), f"run {run}: readers still running"
        for name, frames in crowd.frames.items():
            assert frames and frames[-1] == BYE_SHUTDOWN, (run, name, frames[-3:])
        assert lurker_frames == [[BYE_SHUTDOWN]] * len(crowd.lurkers), lurker_frames
        err = server.proc.stderr.read().decode() if server.proc.stderr else ""
        assert "Traceback" not in err, err
        assert_clean_log(server)
        for c in [*crowd.clients.values(), *crowd.lurkers]:
            c.close()


# ---- defect 12: bounded outbound memory -------------------------------------------

_MIB = 1024 * 1024


def test_a_broadcast_flood_to_clients_that_never_read_keeps_memory_bounded(start_server) -> None:
    # 16 clients that never read, each allowed 16 MiB (--max-outbuf), but 16 MiB for all
    # together (--max-total-outbuf). The old server only had the per-connection limit: all
    # 16 buffers grew together to 16 MiB before any was dropped, 256 MiB of queued bytes
    # (VmHWM 289 MB measured, after ~4,800 messages). With the shared budget the worst
    # case is 16 MiB + 18 connections x 64 KiB (SOFT_LIMIT, docs/server.md) on top of the
    # ~35 MB the idle server holds: VmHWM 54-56 MB measured here (all 16 dropped after
    # ~1,000 messages). 150 MB leaves room for allocator slack and a busier flood, and
    # still fails the old behaviour by a factor of two.
    server = start_server(
        "--max-outbuf", str(16 * _MIB), "--max-total-outbuf", str(16 * _MIB), "--rate-limit", "0"
    )
    sender = online(server, "sender")
    reader = online(server, "reader")
    roster_changes(sender, join=["reader"])
    sleepers = []
    for i in range(16):
        s = raw_client(server, rcvbuf=4096)
        s.login(f"sleeper{i}", PASSWORD)  # and never reads again
        sleepers.append(f"sleeper{i}")
    got = [0]
    reader_failed: list[BaseException] = []

    def read() -> None:
        try:
            while True:
                f = next_frame(reader, timeout=30)
                if f["type"] == "msg":
                    assert len(f["text"]) == 4000, f
                    got[0] += 1
                elif f["type"] == "pong":
                    return
        except BaseException as exc:
            reader_failed.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    text = "x" * 4000
    sent = 0
    still_there = set(sleepers)
    while still_there and sent < 8000:
        # 8 in flight, and never more than 8 ahead of the reader: the reader's buffer
        # stays below SOFT_LIMIT, as any client that keeps up with its traffic does.
        for i in range(sent, sent + 8):
            sender.send({"type": "send", "id": i, "to": "*", "text": text})
        for _ in range(8):
            answer = next_frame(sender, timeout=30)
            assert answer["type"] == "sent", answer
            still_there &= set(answer["delivered"])
        sent += 8
        assert wait_for(lambda s=sent: got[0] >= s or bool(reader_failed), timeout=30)
        assert not reader_failed, reader_failed
    assert not still_there, f"{sorted(still_there)} not dropped after {sent} messages"
    assert sent < 8000
    # The sender and the reader went on being served.
    assert request(sender, {"type": "ping"}) == {"type": "pong"}
    reader.send({"type": "ping"})
    thread.join(30)
    assert not reader_failed, reader_failed
    assert got[0] == sent
    log = wait_log(server, r"closed .*user=sleeper\d+ .*send buffer", count=16, timeout=20)
    assert not re.search(r"closed .*user=(sender|reader) ", log)
    peak = peak_rss_mb(server.proc.pid)
    assert peak < 150, f"peak RSS {peak:.0f} MB after {sent} messages of 4 KB to 18 clients"


# ---- defect 13: a failed-login flood does not stall chat --------------------------

#: What a wrong password may get: the answer, the end of the connection's tries, or
#: (hash queue full) a refusal to queue more.
FLOOD_ANSWERS = {"bad_credentials", "too_many_attempts", "rate_limited"}


def test_a_wrong_password_flood_at_the_default_cost_does_not_delay_chat(start_server) -> None:
    # The old server hashed on its chat workers: 32 such connections took pings to 25 s.
    server = start_server("--hash-cost", "14")  # the default (ServerConfig.hash_cost)
    assert "hash_cost=14" in wait_log(server, "hash_cost=")
    alice = online(server, "alice")
    bob = online(server, "bob")
    roster_changes(alice, join=["bob"])
    stop = threading.Event()
    answered = [0] * 32
    odd: list[dict[str, Any]] = []
    live: list[socket.socket] = []

    def flood(i: int) -> None:
        while not stop.is_set():
            try:
                c = WireClient(server.host, server.port)
            except OSError:
                time.sleep(0.1)
                continue
            live.append(c.sock)
            try:
                while not stop.is_set():
                    name = "bob" if i % 2 else f"ghost{i}"
                    c.send(auth(name, f"wrong {i}"))
                    f = c.recv(timeout=60)
                    answered[i] += 1
                    if f["type"] != "error" or f["code"] not in FLOOD_ANSWERS:
                        odd.append(f)
                    if f.get("code") != "bad_credentials":
                        break
            except (OSError, Closed, TimeoutError):
                pass
            finally:
                c.close()

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(32)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every flood connection has its first attempt in
    ping_rtt, msg_delay = [], []
    end = time.monotonic() + 5
    n = 0
    try:
        while time.monotonic() < end:
            start = time.monotonic()
            assert request(alice, {"type": "ping"}, timeout=60) == {"type": "pong"}
            ping_rtt.append(time.monotonic() - start)
            n += 1
            start = time.monotonic()
            alice.send({"type": "send", "id": n, "to": ["bob"], "text": f"hi {n}"})
            m = next_frame(bob, timeout=60)
            msg_delay.append(time.monotonic() - start)
            assert m["type"] == "msg" and m["text"] == f"hi {n}", m
            assert next_frame(alice, timeout=60)["type"] == "sent"
            time.sleep(0.05)
    finally:
        stop.set()
        for sock in list(live):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(10)
    assert not odd, odd[:5]
    assert sum(answered) >= 20, f"only {sum(answered)} wrong passwords were answered: no flood"
    assert max(ping_rtt) < 1.0, f"ping RTT up to {max(ping_rtt):.2f}s ({len(ping_rtt)} pings)"
    assert max(msg_delay) < 1.0, f"message took up to {max(msg_delay):.2f}s"


# ---- defect 14: slots --------------------------------------------------------------


def test_a_full_server_evicts_the_oldest_connection_not_logged_in_to_admit_a_login(
    start_server,
) -> None:
    # The old server answered server_full to every login while idlers held the slots.
    # Since issue 17 a newcomer evicts at once, whatever the idlers' age (one address here:
    # its oldest goes; tests/e2e/test_server_eviction.py has the rest of the rule).
    server = start_server("--max-clients", "20", "--auth-timeout", "4")
    idlers = [pinged(server) for _ in range(20)]
    filled = time.monotonic()
    newcomer = server.client()
    newcomer.login("newcomer", PASSWORD)
    assert request(newcomer, {"type": "ping"}) == {"type": "pong"}
    fatal(idlers[0], "server_full")
    assert time.monotonic() - filled < 2.0, "the login came only after the idlers timed out"
    # The others are still there (until their own login deadline).
    assert all(request(c, {"type": "ping"}) == {"type": "pong"} for c in idlers[1:])


def test_connections_not_logged_in_are_capped_per_address(start_server) -> None:
    # The old server let one address hold every slot with connections that never log in.
    server = start_server("--max-unauth-per-addr", "5")
    members = [online(server, f"m{i}") for i in range(3)]  # logged in: they do not count
    waiting = [pinged(server) for _ in range(5)]
    sixth = server.client()
    fatal(sixth, "server_full")
    waiting[0].login("late", PASSWORD)  # one of the five logs in: a place is free
    assert request(waiting[0], {"type": "ping"}) == {"type": "pong"}
    waiting.append(pinged(server))
    seventh = server.client()
    fatal(seventh, "server_full")
    assert all(request(c, {"type": "ping"}) == {"type": "pong"} for c in members + waiting)


# ---- defect 16: replies in the order of the frames --------------------------------


def test_replies_to_one_write_come_in_the_order_of_its_frames(server) -> None:
    # The old server answered the bad send before the earlier good one.
    alice = online(server, "alice")
    alice.send_raw(
        frame({"type": "send", "id": "first", "to": "*", "text": "hello"})
        + frame({"type": "send", "id": 3.5, "to": "*", "text": "float id"})
        + frame({"type": "ping"})
    )
    replies = [next_frame(alice) for _ in range(3)]
    assert replies[0]["type"] == "sent" and replies[0]["id"] == "first", replies
    assert_error(replies[1], "bad_request")
    assert replies[2] == {"type": "pong"}, replies
    # While a password is hashed (on its own threads now) the frames after it wait:
    # the ping is answered after the login error, not before.
    c = server.client()
    c.send_raw(frame(auth("alice", "wrong")) + frame({"type": "ping"}))
    first, second = c.recv(), c.recv()
    assert_error(first, "bad_credentials")
    assert second == {"type": "pong"}, (first, second)


# ---- defect 17: a dropped slow reader is told why -----------------------------------


def test_a_client_dropped_for_a_full_send_buffer_reads_a_bye_saying_why(start_server) -> None:
    # The old server closed such a client with nothing but EOF (or a reset).
    server = start_server("--max-outbuf", "65536", "--rate-limit", "0", "--shutdown-grace", "5")
    sender = online(server, "sender")
    slow = raw_client(server, rcvbuf=4096)
    slow.login("slow", PASSWORD)  # the sender is in its full roster: no delta to ack
    assert request(slow, {"type": "ping"}) == {"type": "pong"}
    roster_changes(sender, join=["slow"])
    text = "y" * 4000
    for i in range(3000):  # far beyond 64 KiB plus what the kernel holds
        answer = request(sender, {"type": "send", "id": i, "to": ["slow"], "text": text})
        assert answer["type"] == "sent", answer
        if "slow" in answer["missing"]:
            break
    else:
        raise AssertionError("the slow client was never dropped")
    frames = frames_until_eof(slow, timeout=15)  # it reads again, within the grace
    assert frames, "nothing came before EOF"
    last = frames[-1]
    assert last["type"] == "bye" and "send buffer" in last["reason"], last
    assert all(f["type"] == "msg" and f["text"] == text for f in frames[:-1]), frames[-2:]
    assert request(sender, {"type": "ping"}) == {"type": "pong"}


# ---- defect 4: the login throttle ----------------------------------------------------


def test_repeated_wrong_passwords_for_one_account_get_slower_but_are_never_refused(
    start_server,
) -> None:
    server = start_server()
    register(server, "victim")
    took: list[float] = []
    c = server.client()
    while len(took) < 10:
        if len(took) in (4, 8):  # several connections, as an attacker would use
            c.close()
            c = server.client()
        seconds, answer = answer_in(c, auth("victim", "guess"))
        assert_error(answer, "bad_credentials")  # slowed, never rate_limited
        took.append(seconds)
    c.close()
    # The account's schedule (throttle.py): a few free failures, then 0.25, 0.5, 1, 2 s
    # (measured: 3 ms each up to the 7th, then 0.25, 0.5, 1.0 s). The old server: 3 ms each.
    assert took[0] < 0.5, took
    assert took[-1] > 0.2 + took[0], took
    assert sum(took) > 1.0, took
    # Another account from the same address is not slowed.
    other = server.client()
    seconds, answer = answer_in(other, auth("bystander", PASSWORD, register=True))
    assert answer == {"type": "auth_ok", "user": "bystander"}, answer
    assert seconds < 1.0, seconds


# ---- defect 15: probing for taken names ---------------------------------------------


def test_registering_a_taken_name_again_and_again_is_slowed_like_failed_logins(
    start_server,
) -> None:
    # The old server answered user_exists 66,000 times a second on one connection.
    server = start_server()
    register(server, "taken")
    c = server.client()
    seconds = 0.0
    for i in range(10):
        took, answer = answer_in(c, auth("taken", f"try {i}", register=True))
        assert_error(answer, "user_exists")  # slowed, never refused
        seconds += took
    # The failed-login schedule: a few free, then 0.25 + 0.5 + 1 s (1.8 s measured).
    assert seconds > 1.0, f"10 probes of a taken name took {seconds:.2f}s"
    assert request(c, {"type": "ping"}) == {"type": "pong"}
