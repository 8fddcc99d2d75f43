"""A log's reader (cluster/bus.py `Follower`) when Redis fails in the middle of a catch-up.

A catch-up reads a log's stream a few hundred entries per call. The reader used to
count each call's entries as taken before the next call: a Redis that failed on a
later call (a master frozen, a failover) left the reader past entries its caller
never got, since the caller drops what an error interrupts, and they were never
read again (the chaos soak, tests/soak, lost room messages during a freeze). Now
nothing is taken until the whole catch-up returns. The logs and Redis are real
(one instance and a Redis Cluster); the failure is a real `redis.ConnectionError`
raised by the second read, since a real Redis cannot be made to fail between two
calls of one catch-up on cue. The node's subscriber loop is tested the same way: its
inbox log's reads fail from a chosen one on (the log's class swapped for the failing one),
everything else a real node's broker over a real Redis.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from chat.server.cluster import bus, crossing, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import INBOX_KEEPS, RedisBroker
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.shared.messages import Msg, encode_msgs

from .conftest import AnyRedis
from .test_crossing import KEY, TS, Inbox

MORE_THAN_A_READ = bus._CATCH_UP + 100


class FailsOnce(bus.Log):
    """A log whose `fail_at`-th stream read fails as a Redis that stops answering does."""

    fail_at = 0
    reads = 0

    def read_after(self, client: Any, after: int) -> Any:
        self.reads += 1
        if self.reads == self.fail_at:
            raise redis.ConnectionError("Redis stopped answering (the test's)")
        return super().read_after(client, after)


def test_a_catch_up_that_fails_halfway_is_read_again_whole(redis_server: AnyRedis) -> None:
    link = Link(redis_server.url)
    try:
        log = FailsOnce(link, keys.node_inbox("n-follows"), 2 * MORE_THAN_A_READ)
        follower = bus.Follower(link, [log])
        follower.start()
        start = follower.last(log.channel)
        sent = [f"m{i}".encode() for i in range(MORE_THAN_A_READ)]
        for payload in sent:
            log.publish(link.client, payload)
        log.fail_at = 2  # the first read gives 500 entries, the second fails
        with pytest.raises(redis.ConnectionError):
            follower.again(log.channel)
        assert follower.last(log.channel) == start  # nothing taken that was not handed over
        assert follower.again(log.channel) == sent  # all of it, once, in order
        assert follower.last(log.channel) == start + MORE_THAN_A_READ
        assert follower.again(log.channel) == []
    finally:
        link.client.close()


# Two messages of a node's inbox in one script, so that its subscriber reads them in one
# batch: the first with the next number, the second one number further (a number skipped:
# the reader catches up from the stream, and that read fails). KEYS: stream, state. ARGV:
# the two payloads, the publish command, the channel.
_TWO_IN_ONE_BATCH = """
local e = redis.call('HGET', KEYS[2], 'e')
local n = redis.call('HINCRBY', KEYS[2], 's', 1)
redis.call('XADD', KEYS[1], n .. '-0', 'd', ARGV[1])
redis.call(ARGV[3], ARGV[4], n .. '.' .. e .. ' ' .. ARGV[1])
n = redis.call('HINCRBY', KEYS[2], 's', 2)
redis.call('XADD', KEYS[1], n .. '-0', 'd', ARGV[2])
redis.call(ARGV[3], ARGV[4], n .. '.' .. e .. ' ' .. ARGV[2])
return n
"""


def test_what_a_batch_took_before_a_redis_error_is_still_delivered(
    redis_server: AnyRedis,
) -> None:
    """A node's subscriber takes the first message live, then the catch-up for the second
    fails: the first is handed over all the same (before, the batch was dropped with the
    reader already past it: lost), and the second comes with the next catch-up."""
    box = Box(KEY, load_cipher())
    node = RedisBroker(Link(redis_server.url), box, "n-batch")
    inbox = Inbox()
    node.start(inbox)
    link = Link(redis_server.url)
    channel = keys.node_inbox("n-batch")
    log = bus.Log(link, channel, INBOX_KEEPS, settles=True)

    def sealed(text: str, first: int) -> bytes:
        msgs = (Msg(first, "alice", ("bob",), text, TS),)
        return box.seal(channel.encode(), crossing.payload(crossing.msgs("alice", ("bob",), msgs)))

    try:
        _, took = log.publish(link.client, sealed("before", 1))
        assert int(took) == 1
        inbox.wait(1)
        node._inbox.__class__ = FailsOnce  # the catch-up's first read from now on fails
        node._inbox.fail_at = 1
        link.client.eval(
            _TWO_IN_ONE_BATCH,
            2,
            log.stream,
            log.state,
            sealed("taken live", 2),
            sealed("caught up", 3),
            link.pub,
            channel,
        )
        got = inbox.wait(3, timeout=10)
        texts = [m[3] for m in got]
        assert texts == [
            encode_msgs((Msg(n, "alice", ("bob",), t, TS),))
            for n, t in ((1, "before"), (2, "taken live"), (3, "caught up"))
        ], got
        assert node._inbox.reads >= 2  # the failed read, then the one that caught up
    finally:
        node.stop()
        link.client.close()
