"""What each frame does, run through real mailboxes, hub, hashing and store: no sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from chat.server.core.outbuf import Append
from chat.server.core.results import Abort, Evict, PeerGone
from chat.server.net.inbox import Cause, CloseAfterFlush, LoggedIn
from chat.shared.errors import Code, RemoteProtocolError, Why
from chat.shared.framing import encode_frame
from chat.shared.messages import (
    Auth,
    AuthOk,
    ClientBye,
    Error,
    Msg,
    Ping,
    Pong,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerBye,
)

from .harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def closes(world: World) -> list[CloseAfterFlush]:
    return [r for r in world.requests if isinstance(r, CloseAfterFlush)]


def test_registration_answers_auth_ok_then_the_full_roster_and_tells_the_loop(
    world: World,
) -> None:
    bob = world.login("bob")
    alice = world.connect()
    world.post(alice, Auth("alice", "secret", register=True))
    assert world.frames(alice) == [AuthOk("alice"), Roster(1, True, users=("bob",))]
    assert LoggedIn(alice.cid) in world.requests
    world.post(alice, RosterAck(1))
    assert world.frames(bob) == [Roster(2, False, join=("alice",))]


def test_replies_keep_the_order_of_the_frames_they_answer(world: World) -> None:
    """Defect 16: a valid send, a send with a float id, a ping: sent, error, pong."""
    alice = world.login("alice")
    world.login("bob")
    world.frames(alice)  # the join of bob
    bad = encode_frame(b'{"type":"send","id":3.5,"to":["bob"],"text":"x"}')[4:]
    world.post(alice, Send(1, ("bob",), "hi"), bad, Ping())
    sent, error, pong = world.frames(alice)
    assert sent == Sent(1, ("bob",), (), msg_id=ANY)
    assert isinstance(error, Error) and error.code == "bad_request" and error.id is None
    assert pong == Pong()


def test_frames_after_an_auth_wait_for_its_password_check(world: World) -> None:
    world.login("alice")
    conn = world.connect()
    world.post(conn, Auth("alice", "wrong"), Ping(), Auth("alice", "pw"), Ping())
    frames = world.frames(conn)
    assert [type(f).__name__ for f in frames] == ["Error", "Pong", "AuthOk", "Roster", "Pong"]
    assert frames[0].code == "bad_credentials"


def test_a_reset_during_a_password_check_is_no_local_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 1: the outcome and the peer's end arrive in the mailbox, in that order."""
    caplog.set_level(logging.INFO)
    for i in range(15):  # distinct names, below the address's free failures: no throttle
        conn = world.connect()
        conn.mailbox.post([Auth_payload(f"nobody{i}", "wrong"), PeerGone("ECONNRESET")], 0)
        world.settle()
        assert conn.conn.closed
    text = caplog.text
    assert "LocalProtocolError" not in text and "Traceback" not in text
    assert "failed" not in text.replace("login failed", "")
    assert len(closes(world)) == 15
    assert all(c.cause is Cause.BROKEN for c in closes(world))


def Auth_payload(user: str, password: str) -> bytes:
    return encode_frame(f'{{"type":"auth","user":"{user}","password":"{password}"}}'.encode())[4:]


def test_failed_logins_are_logged_with_peer_and_reason_never_the_password(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chat.server")
    conn = world.connect()
    world.post(conn, Auth("ghost", "hunter2-very-secret"))
    [line] = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert conn.addr in line and "user=ghost" in line and "bad credentials" in line
    assert "hunter2" not in caplog.text
    assert caplog.records[-1].levelno == logging.INFO


def test_the_fifth_failure_is_too_many_attempts_alone_then_the_close(world: World) -> None:
    conn = world.connect()
    for _ in range(5):
        world.post(conn, Auth("ghost", "wrong"))
    frames = world.frames(conn)
    assert [f.code for f in frames] == ["bad_credentials"] * 4 + ["too_many_attempts"]  # type: ignore[union-attr]
    world.post(conn, Ping())
    assert world.frames(conn) == []
    assert conn.out.sealed and closes(world)[-1].reason == "too_many_attempts"


def test_a_taken_name_is_user_exists_and_not_a_failed_login(world: World) -> None:
    world.login("alice")
    conn = world.connect()
    for _ in range(6):
        world.post(conn, Auth("alice", "x", register=True))
    assert [f.code for f in world.frames(conn)] == ["user_exists"] * 6  # type: ignore[union-attr]
    assert not conn.conn.closed


def test_a_message_reaches_every_session_and_sent_names_who_got_it(world: World) -> None:
    alice, bob, carol = world.login("alice"), world.login("bob"), world.login("carol")
    for s in (alice, bob, carol):
        world.frames(s)
    world.post(alice, Send("m1", "*", "hello"), Send("m2", ("bob", "zed"), "psst"))
    assert world.frames(alice) == [
        Sent("m1", ("bob", "carol"), (), msg_id=ANY),
        Sent("m2", ("bob",), ("zed",), msg_id=ANY),
    ]
    to_bob = world.frames(bob)
    assert [(m.sender, m.to, m.text) for m in to_bob] == [  # type: ignore[union-attr]
        ("alice", "*", "hello"),
        ("alice", ("bob", "zed"), "psst"),
    ]
    assert all(isinstance(m, Msg) for m in to_bob)
    assert to_bob[0].id < to_bob[1].id  # type: ignore[union-attr]
    assert [m.text for m in world.frames(carol)] == ["hello"]  # type: ignore[union-attr]


def test_over_the_rate_limit_a_send_is_rate_limited_with_its_id(tmp_path: Path) -> None:
    world = World(tmp_path, rate=(1.0, 2))
    try:
        alice = world.login("alice")
        world.post(alice, *(Send(i, "*", "x") for i in range(3)))
        frames = world.frames(alice)
        assert [type(f).__name__ for f in frames] == ["Sent", "Sent", "Error"]
        assert frames[2] == Error("rate_limited", "slow down", 2)
    finally:
        world.close()


def test_a_bye_is_answered_by_bye_alone_and_the_roster_says_leave(world: World) -> None:
    alice, bob = world.login("alice"), world.login("bob")
    assert world.frames(alice) == [Roster(2, False, join=("bob",))]
    world.post(alice, RosterAck(2))
    world.post(bob, ClientBye(), Ping())
    assert world.frames(bob) == [ServerBye("bye")]
    assert closes(world)[-1] == CloseAfterFlush(bob.cid, "bye", Cause.PEER)
    assert world.frames(alice) == [Roster(3, False, leave=("bob",))]


def test_a_deadline_ends_the_connection_with_its_error_as_the_final_frame(world: World) -> None:
    alice = world.login("alice")
    err = RemoteProtocolError(Code.TIMEOUT, Why.IDLE)
    world.post(alice, Abort(err, "timeout: idle"), Ping())
    assert world.frames(alice) == [Error("timeout", "idle for too long")]
    assert alice.conn.closed


def test_a_slow_reader_overflows_and_is_evicted_with_a_bye_saying_why(tmp_path: Path) -> None:
    world = World(tmp_path, max_outbuf=8192)
    try:
        alice, bob = world.login("alice"), world.login("bob")
        world.frames(alice)
        world.post(alice, *(Send(i, ("bob",), "x" * 1000) for i in range(12)))
        assert bob.out.overflow
        assert bob.out.append(b"more") is Append.OVERFLOW
        world.post(bob, Evict(Why.SLOW_READER))
        frames = world.frames(bob)
        assert frames[-1] == ServerBye(Why.SLOW_READER)
        assert all(isinstance(f, Msg) for f in frames[:-1]) and len(frames) < 12
        assert world.hub.online() == ["alice"]
    finally:
        world.close()


def test_a_full_hash_queue_answers_rate_limited_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, hash_queue=1)
    try:
        world.hasher.submit(lambda: __import__("time").sleep(0.3))  # occupy the thread
        deadline = time.monotonic() + 5
        while len(world.hasher) and time.monotonic() < deadline:  # until it has taken it
            time.sleep(0.001)
        assert world.hasher.submit(lambda: None)  # and the one queue slot
        conn = world.connect()
        world.post(conn, Auth("alice", "pw", register=True), Ping())
        assert world.frames(conn) == [Error("rate_limited", "slow down"), Pong()]
        world.post(conn, Auth("alice", "pw", register=True))
        assert [type(f).__name__ for f in world.frames(conn)] == ["AuthOk", "Roster"]
    finally:
        world.close()


def test_a_wrong_roster_ack_is_bad_request_and_keeps_the_session_in_roster(
    world: World,
) -> None:
    conn = world.connect()
    world.post(conn, Auth("alice", "pw", register=True))
    world.frames(conn)
    world.post(conn, RosterAck(7), Send(1, "*", "x"), RosterAck(1))
    frames = world.frames(conn)
    assert frames[0].code == "bad_request"  # type: ignore[union-attr]
    assert frames[1] == Error("not_ready", "acknowledge the roster first", 1)
    assert conn.conn.state.name == "CHAT"
