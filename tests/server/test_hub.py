"""Who is online and the roster that follows: one join per user, leave with the last session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.server.core.hub import Dirty, Route, Targets
from chat.shared.messages import Auth, Roster, RosterAck, Send

from .harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_a_second_session_of_a_user_is_no_join_and_its_end_no_leave(world: World) -> None:
    alice = world.login("alice")
    bob1 = world.login("bob")
    assert world.frames(alice) == [Roster(2, False, join=("bob",))]
    world.post(alice, RosterAck(2))
    bob2 = world.login("bob", register=False)
    assert world.frames(alice) == []
    dirty: Dirty = None
    assert world.hub.remove(bob1, dirty) is False and world.frames(alice) == []
    assert world.hub.remove(bob2, dirty) is True
    assert world.frames(alice) == [Roster(3, False, leave=("bob",))]
    assert world.hub.remove(bob2, dirty) is False  # idempotent


def test_recipients_name_each_user_once_without_the_sender(world: World) -> None:
    alice, bob = world.login("alice"), world.login("bob")
    stamped: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def stamp(route: Route) -> str:
        stamped.append((route.delivered, route.missing))
        return "stamped"

    route, made = world.hub.route("alice", ("bob", "bob", "alice", "zed"), stamp)
    assert handles(route.targets) == [bob.out.handle] and route.targets.exclude == 0
    assert route.delivered == ("bob",) and route.missing == ("zed",)
    assert route.delivered_json == b'["bob"]'
    assert made == "stamped" and stamped == [(("bob",), ("zed",))]
    route, _ = world.hub.route("bob", "*", stamp)
    assert route.delivered == ("alice",) and route.missing == ()
    assert route.delivered_json == b'["alice"]'
    assert stamped[-1] == (("alice",), ())
    # Everyone's array, less the sender's tag: the library skips bob's own sessions.
    assert sorted(handles(route.targets)) == sorted([alice.out.handle, bob.out.handle])
    assert route.targets.exclude not in (0, _tag(world, "alice"))


def test_the_everyone_else_list_changes_with_the_roster(world: World) -> None:
    world.login("alice")
    world.login("bob")
    route, _ = world.hub.route("alice", "*", lambda route: None)
    assert route.delivered == ("bob",)
    world.login("carol")
    route, _ = world.hub.route("alice", "*", lambda route: None)
    assert route.delivered == ("bob", "carol") and route.delivered_json == b'["bob","carol"]'


def handles(targets: Targets) -> list[int]:
    return [int(targets.handles[i]) for i in range(targets.count)]


def _tag(world: World, name: str) -> int:
    return world.hub._tags[name]


def test_a_message_to_everyone_skips_every_session_of_its_sender(world: World) -> None:
    alice1, bob = world.login("alice"), world.login("bob")
    alice2 = world.login("alice", register=False)
    for s in (alice1, alice2, bob):
        world.frames(s)
    world.post(alice1, Send(1, "*", "hi all"))
    assert [f.type for f in world.frames(bob)] == ["msg"]
    assert world.frames(alice2) == [] and [f.type for f in world.frames(alice1)] == ["sent"]


def test_the_stamp_runs_under_the_hub_lock(world: World) -> None:
    """What a send hands the store happens before any join or leave can come between."""
    world.login("alice")
    held: list[bool] = []
    world.hub.route("alice", "*", lambda route: held.append(world.hub._lock.locked()))
    assert held == [True]


def test_an_unacknowledged_roster_frame_is_overdue_after_the_ack_timeout(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, clock=lambda: 0.0)  # every deadline is 30 s after t = 0
    try:
        alice = world.login("alice")
        world.login("bob")  # alice now has a delta in flight
        assert world.hub.overdue(29.0) == []
        assert world.hub.overdue(30.0) == [alice]
        world.post(alice, RosterAck(2))
        assert world.hub.overdue(100.0) == []
    finally:
        world.close()


def test_logins_and_acks_answered_after_shutdown_change_nothing_and_fail_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # CI once logged "mailbox handler failed" (a KeyError) for an ack that raced SIGTERM.
    alice = world.login("alice")
    bob = world.connect()
    world.post(bob, Auth("bob", "pw", True))
    auth_ok, roster = world.frames(bob)
    assert auth_ok.type == "auth_ok" and roster.type == "roster"
    carol = world.connect()
    world.hub.close_all()
    world.post(bob, RosterAck(roster.seq))
    world.post(carol, Auth("carol", "pw", True))
    assert "failed" not in caplog.text and world.hub.online() == []
    assert world.frames(alice) == [] and world.frames(carol) == []  # the loop says bye
    assert world.hub.overdue(1e12) == []
