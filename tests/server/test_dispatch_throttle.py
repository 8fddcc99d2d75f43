"""Logins that wait for their account's turn (the throttle), through real mailboxes, a
real hash executor and a real users store: no sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.shared.messages import Auth, AuthOk, Error, Ping, Pong, encode

from .harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _post(world: World, session, *messages) -> None:
    payloads = [encode(m)[4:] for m in messages]
    session.mailbox.post(payloads, sum(map(len, payloads)))


def _drive_until(world: World, done, timeout: float = 5.0) -> float:
    """Run the mailboxes until `done()`; the seconds it took."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, "not done in time"
        world.pool.run()
        time.sleep(0.002)
    return time.monotonic() - started


def test_logins_waiting_for_their_account_hold_their_mailbox_but_no_thread(
    world: World,
) -> None:
    world.login("alice", "right")
    world.login("bob", "right")
    for i in range(12):  # a guesser elsewhere: alice's checks now take turns, 2 s apart
        world.throttle.failure("alice", f"10.9.9.{i}")
    waiting = [world.connect() for _ in range(10)]
    for s in waiting:
        _post(world, s, Auth("alice", "a guess", False), Ping())
    world.pool.run()
    assert all(s.mailbox.held for s in waiting)  # the ping waits behind its login
    assert world.throttle.waiting("alice") == 10
    # The one hash thread is free: another account's login is checked at once.
    other = world.connect()
    _post(world, other, Auth("bob", "right", False))
    got: list = []
    took = _drive_until(world, lambda: got.extend(world.frames(other)) or bool(got))
    assert got[0] == AuthOk("bob"), got
    assert took < 1.0, took
    assert all(world.frames(s) == [] for s in waiting)  # nothing answered out of turn
    # The waiting ones are answered in turn, each with its ping after it.
    first = waiting[0]  # one address: its attempts go in the order they came
    frames: list = []
    _drive_until(world, lambda: frames.extend(world.frames(first)) or len(frames) >= 2)
    assert isinstance(frames[0], Error) and frames[0].code == "bad_credentials", frames
    assert frames[1] == Pong(), frames


def test_a_login_that_waits_too_long_for_its_turn_is_rate_limited_and_not_counted(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, patience=0.3)
    try:
        world.login("alice", "right")
        for i in range(12):  # alice's next turn is 2 s away
            world.throttle.failure("alice", f"10.9.9.{i}")
        s = world.connect()
        _post(world, s, Auth("alice", "a guess", False), Ping())
        frames: list = []
        took = _drive_until(world, lambda: frames.extend(world.frames(s)) or len(frames) >= 2)
        assert isinstance(frames[0], Error) and frames[0].code == "rate_limited", frames
        assert frames[1] == Pong(), frames  # the connection goes on
        assert 0.25 <= took < 1.5, took
        assert s.conn.failed_auths == 0  # not a failed login (protocol clarification 2)
        assert world.throttle.waiting("alice") == 0
        time.sleep(2.5)  # its turn would have come: nothing is checked for it
        world.pool.run()
        assert world.frames(s) == []
        assert world.throttle.failures(account="alice") == pytest.approx(12, abs=0.2)
    finally:
        world.close()
