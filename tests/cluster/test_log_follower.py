"""A log's reader (cluster/bus.py `Follower`) when Redis fails in the middle of a catch-up.

A catch-up reads a log's stream a few hundred entries per call. The reader used to
count each call's entries as taken before the next call: a Redis that failed on a
later call (a master frozen, a failover) left the reader past entries its caller
never got, since the caller drops what an error interrupts, and they were never
read again (the chaos soak, tests/soak, lost room messages during a freeze). Now
nothing is taken until the whole catch-up returns. The logs and Redis are real
(one instance and a Redis Cluster); the failure is a real `redis.ConnectionError`
raised by the second read, since a real Redis cannot be made to fail between two
calls of one catch-up on cue.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from chat.server.cluster import bus, keys
from chat.server.cluster.link import Link

from .conftest import AnyRedis

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
