"""The cluster's history members in Redis (cluster/messages.py): chunks in a history,
one message per member in a queue, the first format still read, one ZADD per key per
batch, and pages, unread counts and retention over chunks.

Real redis-servers (one instance and a Redis Cluster of three), a real `Box`: the
members are what a node writes, and old members are what a node of the version
before wrote (its formula, kept here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest

from chat.server.cluster import messages as messages_module
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


def test_a_queue_member_is_one_message_in_msgpack_without_its_id(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, box = parts
    msg = Msg(123456789, "b00001", ("b00002",), "x" * 100, 1765000000.125)
    store.put([Kept((msg,), ("b00002",), ("b00002",))])
    queue = store.owner("b00002")
    [(member, score)] = client.zrange(queue, 0, -1, withscores=True)
    assert int(score) == msg.id
    plain = box.open(f"{queue}:{msg.id}".encode(), member)
    assert plain is not None and plain[:1] == b"\x02"
    assert msgspec.msgpack.decode(plain[1:]) == [msg.ts, "b00001", ["b00002"], "x" * 100]
    assert len(member) < len(_first_format(box, queue, msg)) - 20
    assert store.offline("b00002", 0, 10, 1 << 20).messages[0].text == "x" * 100


def test_a_batch_is_one_chunk_per_conversation_sealed_once(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, box = parts
    now = time.time()
    msgs = [Msg(10 + i, "alice", ("bob",), f"t{i}", now + i) for i in range(5)]
    store.put([Kept((m,), ("bob",), ()) for m in reversed(msgs)])  # any order in the batch
    conv = store.conversation("alice", "bob")
    [(member, score)] = client.zrange(conv, 0, -1, withscores=True)
    assert int(score) == 10
    plain = box.open(f"{conv}:10".encode(), member)
    assert plain is not None and plain[:1] == b"\x03"
    rows = msgspec.msgpack.decode(plain[1:])
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4] and [r[4] for r in rows] == [
        f"t{i}" for i in range(5)
    ]
    page = store.page("bob", "alice", None, 50)
    assert page.messages == tuple(msgs) and page.more is False


def test_chunks_are_cut_at_their_size_and_at_an_id_block(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, _box = parts
    now = time.time()
    block_end = messages_module.ID_BLOCK  # the last id of the first block (ids start at 1)
    ids = [*range(1, messages_module.CHUNK_MAX + 3), block_end - 1, block_end, block_end + 1]
    store.put([Kept(tuple(Msg(i, "carol", BROADCAST, f"m{i}", now) for i in ids), (), ())])
    scores = [int(s) for _m, s in client.zrange(store.broadcast(), 0, -1, withscores=True)]
    # CHUNK_MAX, then the two left with the block's last three, then the next block's
    assert scores == [1, messages_module.CHUNK_MAX + 1, block_end + 1]
    got = store.page("dave", BROADCAST, None, 200).messages
    assert [m.id for m in got] == ids


def test_pages_and_unread_counts_cut_through_chunks(parts) -> None:  # type: ignore[no-untyped-def]
    store, _client, _box = parts
    now = time.time()
    sent = []
    for batch in range(6):  # six batches of seven: six chunks
        msgs = []
        for i in range(7):
            sender, to = ("bob", ("alice",)) if i % 3 else ("alice", ("bob",))
            msgs.append(Msg(100 + batch * 10 + i, sender, to, f"{batch}.{i}", now))
        store.put([Kept((m,), (m.to[0],), ()) for m in msgs])
        sent += msgs
    ids = [m.id for m in sent]
    for before in (None, 100, 101, 133, 150, 156, 157, 200):
        for limit in (1, 3, 7, 8, 20, 50):
            want = [i for i in ids if before is None or i < before][-limit:]
            page = store.page("alice", "bob", before, limit)
            assert [m.id for m in page.messages] == want, (before, limit)
            older = [i for i in ids if (before is None or i < before) and i < (want or [0])[0]]
            assert page.more is bool(older), (before, limit)
    for upto in (0, 99, 100, 104, 133, 156, 999):
        from_bob = [m for m in sent if m.sender == "bob" and m.id > upto]
        assert store.unread("alice", "bob", upto, 1000) == (max(ids), len(from_bob)), upto
        assert store.unread("alice", "bob", upto, 3) == (max(ids), min(len(from_bob), 3))


def test_retention_drops_a_chunk_once_its_newest_message_is_old(parts) -> None:  # type: ignore[no-untyped-def]
    store, client, _box = parts
    now = time.time()
    old = [Msg(1, "a", BROADCAST, "old", now - 100), Msg(2, "a", BROADCAST, "old too", now - 90)]
    mixed = [Msg(3, "a", BROADCAST, "old", now - 80), Msg(4, "a", BROADCAST, "new", now - 1)]
    store.put([Kept(tuple(old), (), ())])
    store.put([Kept(tuple(mixed), (), ())])
    assert store.purge_before(now - 50) == 1  # one member: the old chunk
    assert [int(s) for _m, s in client.zrange(store.broadcast(), 0, -1, withscores=True)] == [3]
    store.retention = 50.0
    assert [m.text for m in store.page("b", BROADCAST, None, 10).messages] == ["new"]


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
        assert client.zcard(store.broadcast()) == 1  # twenty messages, one chunk
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
