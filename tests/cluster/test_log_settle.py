"""A node inbox's `settle` (cluster/bus.py) through a failover that lost writes.

A message that no subscriber took live is noted; its publisher asks (`settle`)
until a catch-up took it (the `sent` says `delivered`) or its time is over
(`queued`). Redis replicates asynchronously: a master that fails over can lose
the note, the message and the number it took, and the new master gives that
number to the next message. The number alone then answers for the wrong
message. These tests drive `bus.Log` over a real Redis (one instance and a
Redis Cluster) and make the state a replica that had not received the last
writes would have (the number given back, the note and the stream's entry
gone): exactly the keys a real failover leaves (tests/cluster/
test_redis_cluster.py kills a real master for the rest of that path).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.server.cluster import bus, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import INBOX_KEEPS, RedisBroker
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher

from .conftest import AnyRedis
from .test_crossing import Inbox

KEY = bytes(range(32))
NODE = "node-s"


@pytest.fixture
def inbox_log(redis_server: AnyRedis) -> Iterator[tuple[Link, bus.Log]]:
    link = Link(redis_server.url)
    log = bus.Log(link, keys.node_inbox(NODE), INBOX_KEEPS, settles=True)
    log.ensure(link.client)
    try:
        yield link, log
    finally:
        link.client.close()


def untaken(link: Link, log: bus.Log, payload: bytes) -> tuple[int, str]:
    """Published while nobody listens: noted, and its mark."""
    mark = log.mark()
    number, took = log.publish(link.client, payload, mark)
    assert int(took) == 0
    return int(number), mark


def lose_last(link: Link, log: bus.Log, number: int) -> None:
    """What a replica that had not received message `number`'s writes holds after it takes
    over: the counter one lower, no note, no entry."""
    client = link.client
    client.hset(log.state, "s", number - 1)
    client.hdel(log.state, f"p{number}")
    client.xdel(log.stream, f"{number}-0")
    client.execute_command("XSETID", log.stream, f"{number - 1}-0")  # the stream's top too


def test_a_message_taken_by_a_catch_up_settles_taken_and_asked_again_the_same(
    inbox_log: tuple[Link, bus.Log],
) -> None:
    link, log = inbox_log
    number, mark = untaken(link, log, b"one")
    assert int(log.settle(link.client, number, mark, False)) == -1  # not yet
    *_, rows = log.read_after(link.client, number - 1)
    assert rows == [(number, b"one")]
    assert int(log.settle(link.client, number, mark, False)) == 1
    assert int(log.settle(link.client, number, mark, True)) == 1  # a lost answer asked again


def test_a_message_given_up_is_skipped_by_a_later_catch_up(
    inbox_log: tuple[Link, bus.Log],
) -> None:
    link, log = inbox_log
    number, mark = untaken(link, log, b"late")
    assert int(log.settle(link.client, number, mark, True)) == 0
    *_, rows = log.read_after(link.client, number - 1)
    assert rows == []
    assert int(log.settle(link.client, number, mark, True)) == 0


def test_a_lost_message_whose_number_went_to_one_taken_by_a_catch_up_is_not_said_taken(
    inbox_log: tuple[Link, bus.Log],
) -> None:
    """Before the marks, the catch-up's taking of the second message answered the first's
    settle: `delivered` for a message that never arrived."""
    link, log = inbox_log
    lost, lost_mark = untaken(link, log, b"lost in the failover")
    lose_last(link, log, lost)
    again, mark = untaken(link, log, b"the next one")
    assert again == lost
    assert int(log.settle(link.client, lost, lost_mark, False)) == 0
    *_, rows = log.read_after(link.client, again - 1)
    assert rows == [(again, b"the next one")]
    assert int(log.settle(link.client, lost, lost_mark, True)) == 0
    assert int(log.settle(link.client, again, mark, False)) == 1


def test_the_lost_message_s_last_word_does_not_give_up_the_message_now_under_its_number(
    inbox_log: tuple[Link, bus.Log],
) -> None:
    """Before the marks, the first publisher's final `settle` gave up the second message:
    its catch-up skipped it, and its own settle said it was never taken."""
    link, log = inbox_log
    lost, lost_mark = untaken(link, log, b"lost in the failover")
    lose_last(link, log, lost)
    again, mark = untaken(link, log, b"the next one")
    assert int(log.settle(link.client, lost, lost_mark, True)) == 0
    assert int(log.settle(link.client, again, mark, False)) == -1  # still its own
    *_, rows = log.read_after(link.client, again - 1)
    assert rows == [(again, b"the next one")]
    assert int(log.settle(link.client, again, mark, False)) == 1


def test_a_lost_message_whose_number_went_to_one_taken_live_is_not_said_taken(
    redis_server: AnyRedis, inbox_log: tuple[Link, bus.Log]
) -> None:
    link, log = inbox_log
    lost, lost_mark = untaken(link, log, b"lost in the failover")
    lose_last(link, log, lost)
    inbox = Inbox()
    node = RedisBroker(Link(redis_server.url), Box(KEY, load_cipher()), NODE)
    node.start(inbox)
    try:
        number, took = log.publish(link.client, b"taken live", log.mark())
        assert (int(number), int(took)) == (lost, 1)
        assert int(log.settle(link.client, lost, lost_mark, False)) == 0
        assert int(log.settle(link.client, lost, lost_mark, True)) == 0
    finally:
        node.stop()


def test_a_number_not_given_again_yet_is_lost(inbox_log: tuple[Link, bus.Log]) -> None:
    link, log = inbox_log
    lost, mark = untaken(link, log, b"lost in the failover")
    lose_last(link, log, lost)
    assert int(log.settle(link.client, lost, mark, False)) == 0
