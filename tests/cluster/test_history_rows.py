"""The cluster's history members in Redis (cluster/messages.py): the format written now,
the first format still read, and one ZADD per key per batch.

Real redis-servers (one instance and a Redis Cluster of three), a real `Box`: the
members are what a node writes, and old members are what a node of the version
before wrote (its formula, kept here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest

from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.messages import RedisMessageStore
from chat.server.crypto.cipher import load_cipher
from chat.server.store.sqlite import Kept
from chat.shared.messages import BROADCAST, Msg

from .conftest import AnyRedis

KEY = bytes(range(32))


@pytest.fixture
def parts(redis_of, redis_kind: str) -> Iterator[tuple[RedisMessageStore, object, Box]]:  # type: ignore[no-untyped-def]
    server: AnyRedis = redis_of(redis_kind)
    box = Box(KEY, load_cipher())
    link = Link(server.url)
    try:
        yield RedisMessageStore(link, box), server.client(), box
    finally:
        link.client.close()


def _first_format(box: Box, key: str, msg: Msg) -> bytes:
    """A member as the version before wrote it: `[id, ts, from, to, text]` in JSON."""
    to = msg.to if isinstance(msg.to, str) else list(msg.to)
    row = msgspec.json.encode((msg.id, msg.ts, msg.sender, to, msg.text))
    return box.seal(f"{key}:{msg.id}".encode(), row)


def test_members_of_the_first_format_are_still_read_beside_new_ones(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, box = parts
    now = time.time()
    old_pair = Msg(100, "alice", ("bob",), "from before the upgrade", now - 60)
    old_star = Msg(101, "alice", BROADCAST, "everyone, before", now - 59)
    conv, everyone = store.conversation("alice", "bob"), store.broadcast()
    client.zadd(conv, {_first_format(box, conv, old_pair): old_pair.id})
    client.zadd(everyone, {_first_format(box, everyone, old_star): old_star.id})
    new_pair = Msg(200, "bob", ("alice",), "after it", now)
    store.put([Kept((new_pair,), ("alice",), ())])
    store.put([Kept((Msg(201, "bob", BROADCAST, "everyone, after", now),), (), ())])

    page = store.page("alice", "bob", None, 10)
    assert [(m.id, m.sender, m.to, m.text) for m in page.messages] == [
        (100, "alice", ("bob",), "from before the upgrade"),
        (200, "bob", ("alice",), "after it"),
    ]
    assert page.messages[0].ts == old_pair.ts
    star = store.page("carol", BROADCAST, None, 10)
    assert [(m.id, m.to, m.text) for m in star.messages] == [
        (101, BROADCAST, "everyone, before"),
        (201, BROADCAST, "everyone, after"),
    ]


def test_a_first_format_member_whose_id_disagrees_with_its_score_is_left_out(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, box = parts
    conv = store.conversation("alice", "bob")
    inside = Msg(7, "alice", ("bob",), "says 7", time.time())
    # Sealed for id 8 (so the seal opens at score 8), but the row inside says 7.
    to = list(inside.to)
    row = msgspec.json.encode((7, inside.ts, "alice", to, inside.text))
    client.zadd(conv, {box.seal(f"{conv}:8".encode(), row): 8})
    assert store.page("alice", "bob", None, 10).messages == ()


def test_a_member_now_is_msgpack_without_its_id_and_smaller(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, box = parts
    msg = Msg(123456789, "b00001", ("b00002",), "x" * 100, 1765000000.125)
    store.put([Kept((msg,), ("b00002",), ())])
    conv = store.conversation("b00001", "b00002")
    [(member, score)] = client.zrange(conv, 0, -1, withscores=True)
    assert int(score) == msg.id
    plain = box.open(f"{conv}:{msg.id}".encode(), member)
    assert plain is not None and plain[:1] == b"\x02"
    assert msgspec.msgpack.decode(plain[1:]) == [msg.ts, "b00001", ["b00002"], "x" * 100]
    assert len(member) < len(_first_format(box, conv, msg)) - 20
    assert store.page("b00002", "b00001", None, 1).messages == (msg,)


def test_one_batch_is_one_zadd_per_key(redis_of) -> None:  # type: ignore[no-untyped-def]
    server: AnyRedis = redis_of("redis")  # one instance: its command counts are the cluster's
    client = server.client()
    link = Link(server.url)
    try:
        store = RedisMessageStore(link, Box(KEY, load_cipher()))
        now = time.time()
        pair = [Msg(i, "alice", ("bob",), f"p{i}", now) for i in range(1, 21)]
        star = [Msg(i, "carol", BROADCAST, f"s{i}", now) for i in range(21, 41)]
        queued = [Msg(i, "alice", ("dave",), f"q{i}", now) for i in range(41, 46)]
        store.put([Kept((m,), ("bob",), ()) for m in pair])  # the contacts of a new pair
        client.config_resetstat()
        replies = [Msg(j, "bob", ("alice",), "r", now) for j in (50, 51)]
        store.put(
            [Kept(tuple(star), (), ())]
            + [Kept((m,), ("dave",), ("dave",)) for m in queued]
            + [Kept((m,), ("alice",), ()) for m in replies]
        )
        stats = client.info("commandstats")
        # "*", alice-dave's conversation, dave's queue, alice-bob's: four keys, four ZADDs
        assert stats["cmdstat_zadd"]["calls"] == 4
        assert [m.text for m in store.page("x", BROADCAST, None, 50).messages] == [
            f"s{i}" for i in range(21, 41)
        ]
        assert [m.id for m in store.page("alice", "bob", None, 50).messages] == [
            *range(1, 21),
            50,
            51,
        ]
        assert [m.text for m in store.offline("dave", 0, 50, 1 << 20).messages] == [
            f"q{i}" for i in range(41, 46)
        ]
    finally:
        link.client.close()
