"""Who is online and the roster that follows: one join per user, leave with the last session."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chat.server.app import Engines
from chat.server.core.hub import Tick
from chat.server.core.route import Targets
from chat.server.store.seam import Receipt
from chat.shared.messages import Auth, Msg, Recipients, Roster, RosterAck, Send, encode

from .harness import StoreWrapper, World

Keep = tuple[tuple[str, ...], tuple[str, ...]] | None  # (named, queued), or not kept


class WatchedStore(StoreWrapper):
    """The world's store, noting every hand-over (the send path's `stamp`: ids, and the
    messages kept) and whether the hub lock was held."""

    def __init__(self, world: World) -> None:
        super().__init__(world.keeper)
        self.world = world
        self.kept: list[tuple[Keep, bool, bool]] = []  # (keep, durable, hub lock held)

    def stamp(
        self,
        sender: str,
        to: Recipients,
        texts: Sequence[str],
        now: float,
        keep: Keep,
        durable: bool,
    ) -> tuple[tuple[Msg, ...] | None, Receipt | None]:
        self.kept.append((keep, durable, self.world.hub._lock.locked()))
        return super().stamp(sender, to, texts, now, keep, durable)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, engines=lambda w: Engines(w.store, WatchedStore(w)))
    yield w
    w.close()


def watched(world: World) -> WatchedStore:
    store = world.engines.store
    assert isinstance(store, WatchedStore)
    return store


def names(delivered: bytes | tuple[str, ...]) -> tuple[str, ...]:
    """`sent.delivered`: JSON encoded once (for "*") or the names (a list's)."""
    return tuple(json.loads(delivered)) if isinstance(delivered, bytes) else tuple(delivered)


def test_a_second_session_of_a_user_is_no_join_and_its_end_no_leave(world: World) -> None:
    alice = world.login("alice")
    bob1 = world.login("bob")
    assert world.frames(alice) == [Roster(2, False, join=("bob",))]
    world.post(alice, RosterAck(2))
    bob2 = world.login("bob", register=False)
    assert world.frames(alice) == []
    tick: Tick = None
    assert world.hub.remove(bob1, tick) is False and world.frames(alice) == []
    assert world.hub.remove(bob2, tick) is True
    assert world.frames(alice) == [Roster(3, False, leave=("bob",))]
    assert world.hub.remove(bob2, tick) is False  # idempotent


def test_recipients_name_each_user_once_without_the_sender(world: World) -> None:
    alice, bob = world.login("alice"), world.login("bob")
    to = ("bob", "bob", "alice", "zed")
    now = time.time()
    plan, msgs, receipt, _ = world.hub.route(
        world.user("alice"), to, ["x"], frozenset({"zed"}), now
    )
    assert handles(plan.targets) == [bob.out.handle] and plan.targets.exclude == 0
    assert plan.targets.users == ("bob",)
    assert plan.delivered == ("bob",) and plan.missing == ("zed",) and plan.queued == ("zed",)
    assert names(plan.delivered_json) == ("bob",)
    assert msgs is not None and [(m.sender, m.to, m.text, m.ts) for m in msgs] == [
        ("alice", to, "x", now)
    ]
    # The store got the message, filed under both conversations, queued for zed, durably
    # (a `sent` naming zed as queued waits for it): the receipt says when it is on disk.
    assert watched(world).kept == [((("bob", "zed"), ("zed",)), True, True)]
    assert receipt is not None and receipt.result(5) is True
    plan, msgs, receipt, _ = world.hub.route(world.user("bob"), "*", ["y"], frozenset(), now)
    assert plan.delivered == ("alice",) and plan.missing == () and plan.queued == ()
    assert names(plan.delivered_json) == ("alice",)
    # "*" is kept for the history, queued for nobody, and nobody waits for it.
    assert watched(world).kept[-1] == (((), ()), False, True)
    assert msgs is not None and msgs[0].to == "*" and receipt is None
    # Everyone's array, less the sender's tag: the library skips bob's own sessions.
    assert sorted(handles(plan.targets)) == sorted([alice.out.handle, bob.out.handle])
    assert plan.targets.exclude not in (0, _tag(world, "alice"))
    assert plan.targets.exclude == _tag(world, "bob")


def test_a_route_to_nobody_the_history_keeps_keeps_nothing(world: World) -> None:
    world.login("alice")
    plan, msgs, receipt, _ = world.hub.route(
        world.user("alice"), ("zed", "alice"), ["x"], frozenset(), 0.0
    )
    assert plan.missing == ("zed",) and not plan.stores and receipt is None
    assert msgs is not None  # ids all the same, but nothing kept
    assert watched(world).kept[-1] == (None, False, True)


def test_the_everyone_else_list_changes_with_the_roster(world: World) -> None:
    world.login("alice")
    world.login("bob")
    plan, _, _, _ = world.hub.route(world.user("alice"), "*", ["x"], frozenset(), 0.0)
    assert plan.delivered == ("bob",)
    world.login("carol")
    plan, _, _, _ = world.hub.route(world.user("alice"), "*", ["x"], frozenset(), 0.0)
    assert plan.delivered == ("bob", "carol") and plan.delivered_json == b'["bob","carol"]'


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


def test_a_message_to_everyone_from_a_sender_with_two_sessions_is_answered_at_once(
    world: World,
) -> None:
    """The fan-out reached every slot but the sender's own (`Targets.reach`): nobody is
    missing and the `sent` goes out in the same batch, without a hold."""
    alice1, bob, carol = world.login("alice"), world.login("bob"), world.login("carol")
    alice2 = world.login("alice", register=False)
    for s in (alice1, alice2, bob, carol):
        world.frames(s)
    plan, _, _, _ = world.hub.route(alice1, "*", ["x"], frozenset(), 0.0)
    assert plan.targets.count == 4 and plan.targets.reach == 2
    world.frames(bob), world.frames(carol)
    alice1.mailbox.post([encode(Send(1, "*", "hi all"))[4:]])
    world.pool.run()  # one batch, one tick: no waiting for anything
    [sent] = world.frames(alice1)
    assert sent.type == "sent" and sorted(sent.delivered) == ["bob", "carol"]
    assert sent.missing == () and not alice1.mailbox.held and alice1.pending is None
    assert [f.type for f in world.frames(bob)] == ["msg"] and world.frames(alice2) == []


def test_a_recipient_of_everyone_whose_slot_is_gone_is_missing(world: World) -> None:
    """A slot closed between the plan and the fan-out took nothing: its user is missing,
    not delivered ("delivered never lies"), and the others got the message."""
    alice, bob, carol = world.login("alice"), world.login("bob"), world.login("carol")
    for s in (alice, bob, carol):
        world.frames(s)
    bob.out.close()  # the loop closed it; the hub has not been told yet
    world.post(alice, Send(1, "*", "hi all"))
    [sent] = world.frames(alice)
    assert sent.type == "sent" and sent.delivered == ("carol",) and sent.missing == ("bob",)
    assert [f.type for f in world.frames(carol)] == ["msg"]


def test_the_store_hand_off_happens_under_the_hub_lock(world: World) -> None:
    """What a send hands the store happens before any join or leave can come between."""
    world.login("alice")
    world.login("bob")
    world.hub.route(world.user("alice"), "*", ["x"], frozenset(), 0.0)
    world.hub.route(world.user("alice"), ("bob", "zed"), ["y"], frozenset(), 0.0)
    assert [held for _, _, held in watched(world).kept] == [True, True]
    # And through a real send: the fan-out's hand-over too.
    alice = world.sessions[0]
    world.post(alice, Send(1, ("bob",), "hi"))
    assert [held for _, _, held in watched(world).kept] == [True, True, True]
    assert not world.hub._lock.locked()


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
