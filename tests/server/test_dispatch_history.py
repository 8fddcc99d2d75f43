"""Protocol v1.1 sections 2-4 and 7 through real mailboxes, hub, store and readers: no sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from chat.server.core.user import User
from chat.shared.messages import (
    Auth,
    ClientBye,
    Error,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Ping,
    Pong,
    RosterAck,
    Send,
    Sent,
    ServerMessage,
)

from .harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def register(world: World, *names: str) -> None:
    """Accounts that exist but are offline."""
    for name in names:
        session = world.login(name)
        world.post(session, ClientBye())


def log_in(world: World, name: str) -> tuple[User, list[ServerMessage]]:
    """Log in and return what came after the roster ack (the offline catch-up)."""
    session = world.connect()
    world.post(session, Auth(name, "pw", False))
    roster = world.frames(session)[1]
    world.post(session, RosterAck(roster.seq))
    return session, world.frames(session)


def msgs(frames: list[ServerMessage]) -> list[Msg]:
    return [f for f in frames if isinstance(f, Msg)]


# --- sent.queued (section 3) -----------------------------------------------------------
def test_a_registered_offline_user_is_queued_an_unknown_one_only_missing(world: World) -> None:
    register(world, "bob")
    alice = world.login("alice")
    carol = world.login("carol")
    world.frames(alice)
    world.post(alice, Send(1, ("bob", "zed", "carol"), "hi"))
    assert world.frames(alice) == [Sent(1, ("carol",), ("bob", "zed"), ("bob",), msg_id=ANY)]
    assert [m.text for m in msgs(world.frames(carol))] == ["hi"]


def test_a_message_to_everyone_queues_nothing(world: World) -> None:
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, Send(1, "*", "to all"))
    assert world.frames(alice) == [Sent(1, (), (), (), msg_id=ANY)]
    _, frames = log_in(world, "bob")
    assert msgs(frames) == []


def test_replies_keep_their_order_while_a_queued_message_is_made_durable(world: World) -> None:
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, Send(1, ("bob",), "stored"), Ping(), Send(2, "*", "live"), Ping())
    assert world.frames(alice) == [
        Sent(1, (), ("bob",), ("bob",), msg_id=ANY),
        Pong(),
        Sent(2, (), (), (), msg_id=ANY),
        Pong(),
    ]


def test_without_a_store_nothing_is_queued_and_history_is_empty(tmp_path: Path) -> None:
    world = World(tmp_path, keep=False)
    try:
        register(world, "bob")
        alice = world.login("alice")
        world.post(alice, Send(1, ("bob",), "lost"), HistoryRequest("h", "bob"))
        assert world.frames(alice) == [
            Sent(1, (), ("bob",), (), msg_id=ANY),
            HistoryPage("h", (), False),
        ]
    finally:
        world.close()


# --- offline delivery --------------------------------------------------------------------
def test_offline_messages_come_at_login_oldest_first_marked_offline(world: World) -> None:
    register(world, "bob")
    alice, carol = world.login("alice"), world.login("carol")
    world.post(alice, Send(1, ("bob",), "first"))
    world.post(carol, Send(1, ("bob", "alice"), "second"))
    world.post(alice, Send(2, ("bob",), "third"))
    _, frames = log_in(world, "bob")
    got = msgs(frames)
    assert [(m.sender, m.text, m.offline) for m in got] == [
        ("alice", "first", True),
        ("carol", "second", True),
        ("alice", "third", True),
    ]
    assert got[1].to == ("bob", "alice") and [m.id for m in got] == sorted(m.id for m in got)


def test_unacknowledged_offline_messages_come_again_and_acknowledged_ones_do_not(
    world: World,
) -> None:
    register(world, "bob")
    alice = world.login("alice")
    for i in range(3):
        world.post(alice, Send(i, ("bob",), f"m{i}"))
    bob, frames = log_in(world, "bob")
    first = msgs(frames)
    world.post(bob, ClientBye())
    bob, frames = log_in(world, "bob")
    assert [m.id for m in msgs(frames)] == [m.id for m in first]  # not acked: again
    world.post(bob, OfflineAck(first[1].id), ClientBye())
    _, frames = log_in(world, "bob")
    assert [m.text for m in msgs(frames)] == ["m2"]


def test_an_offline_ack_with_nothing_to_remove_is_not_an_error(world: World) -> None:
    bob = world.login("bob")
    world.post(bob, OfflineAck(12345), OfflineAck(-1), Ping())
    assert world.frames(bob) == [Pong()]


def test_every_offline_message_comes_before_any_live_one_across_many_pages(
    world: World,
) -> None:
    """500 stored messages (3 pages); live messages sent during the catch-up wait for it."""
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, *(Send(i, ("bob",), f"stored {i}") for i in range(500)))
    assert len(world.frames(alice)) == 500
    world.auto_drain = False  # bob's buffer is not written until the test says so
    bob = world.connect()
    world.post(bob, Auth("bob", "pw", False))
    roster = world.frames(bob)[1]
    world.post(bob, RosterAck(roster.seq))
    assert world.drain_waits  # the first page is queued, the next waits for the drain
    world.post(alice, Send("live1", ("bob",), "live one"), Send("live2", "*", "live two"))
    sent = [f for f in world.frames(alice) if isinstance(f, Sent)]
    assert sent == [
        Sent("live1", ("bob",), (), (), msg_id=ANY),
        Sent("live2", ("bob",), (), (), msg_id=ANY),
    ]
    while world.drain_waits:
        world.drain()
    texts = [m.text for m in msgs(world.frames(bob))]
    assert texts == [f"stored {i}" for i in range(500)] + ["live one", "live two"]


def test_a_connection_that_ends_during_the_catch_up_leaves_the_roster(world: World) -> None:
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, *(Send(i, ("bob",), f"m{i}") for i in range(300)))
    world.frames(alice)
    world.auto_drain = False
    bob = world.connect()
    world.post(bob, Auth("bob", "pw", False))
    world.post(bob, RosterAck(world.frames(bob)[1].seq))
    assert world.hub.online() == ["alice", "bob"]
    world.post(bob, ClientBye())  # waits behind the catch-up
    world.drain(ok=False)  # the loop says the connection is ending
    assert world.hub.online() == ["alice"]


# --- history (section 4) ------------------------------------------------------------------
def test_history_follows_the_privacy_rule_with_three_users(world: World) -> None:
    alice, bob, carol = world.login("alice"), world.login("bob"), world.login("carol")
    world.post(alice, Send(1, ("bob",), "a->b"))
    world.post(alice, Send(2, ("bob", "carol"), "a->bc"))
    world.post(carol, Send(3, ("bob",), "c->b"))
    world.post(bob, Send(4, "*", "b->all"))

    def history(session: User, peer: str) -> list[str]:
        world.frames(session)
        world.post(session, HistoryRequest("h", peer))
        (page,) = world.frames(session)
        assert isinstance(page, HistoryPage) and page.id == "h"
        return [m.text for m in page.messages]

    assert history(alice, "bob") == ["a->b", "a->bc"]
    assert history(bob, "alice") == ["a->b", "a->bc"]
    assert history(carol, "alice") == ["a->bc"]
    assert history(carol, "bob") == ["c->b"]
    assert history(bob, "carol") == ["c->b"]
    assert history(carol, "*") == ["b->all"]


def test_history_pages_with_before_limit_and_more(world: World) -> None:
    alice, bob = world.login("alice"), world.login("bob")
    for i in range(7):
        world.post(alice, Send(i, ("bob",), f"m{i}"))
    world.frames(bob)
    world.post(bob, HistoryRequest(1, "alice", None, 3))
    (page,) = world.frames(bob)
    assert [m.text for m in page.messages] == ["m4", "m5", "m6"] and page.more
    world.post(bob, HistoryRequest(2, "alice", page.messages[0].id, 3))
    (page,) = world.frames(bob)
    assert [m.text for m in page.messages] == ["m1", "m2", "m3"] and page.more
    world.post(bob, HistoryRequest(3, "alice", page.messages[0].id, 3))
    (page,) = world.frames(bob)
    assert [m.text for m in page.messages] == ["m0"] and not page.more


def test_a_history_page_answers_in_order_with_other_replies(world: World) -> None:
    alice = world.login("alice")
    world.post(alice, Ping(), HistoryRequest("h", "*"), Send(1, "*", "x"), Ping())
    frames = world.frames(alice)
    assert [type(f).__name__ for f in frames] == ["Pong", "HistoryPage", "Sent", "Pong"]


def test_history_before_the_roster_ack_is_not_ready_with_its_id(world: World) -> None:
    alice = world.connect()
    world.post(alice, HistoryRequest("h1", "*"))
    (error,) = world.frames(alice)
    assert isinstance(error, Error) and error.code == "not_authenticated" and error.id == "h1"
    world.post(alice, Auth("alice", "pw", True))
    world.frames(alice)
    world.post(alice, HistoryRequest("h2", "*"), OfflineAck(1))
    first, second = world.frames(alice)
    assert isinstance(first, Error) and first.code == "not_ready" and first.id == "h2"
    assert isinstance(second, Error) and second.code == "not_ready"


def test_a_ping_right_after_the_first_roster_ack_is_answered_after_the_catch_up(
    world: World,
) -> None:
    """What chat-client relies on to know that every stored message has arrived."""
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, *(Send(i, ("bob",), f"m{i}") for i in range(250)))  # two pages
    bob = world.connect()
    world.post(bob, Auth("bob", "pw", False))
    world.post(bob, RosterAck(world.frames(bob)[1].seq), Ping())
    frames = world.frames(bob)
    assert [type(f).__name__ for f in frames] == ["Msg"] * 250 + ["Pong"]


def test_a_message_the_store_cannot_keep_is_answered_with_nobody_queued(world: World) -> None:
    register(world, "bob")
    alice = world.login("alice")
    world.keeper.stop()  # nothing more is stored: every keep is refused at once
    world.post(alice, Send(1, ("bob",), "not kept"), Ping())
    assert world.frames(alice) == [Sent(1, (), ("bob",), (), msg_id=ANY), Pong()]
