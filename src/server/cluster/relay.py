"""What crosses between nodes: one publisher thread, one subscriber thread, both on Redis.

The publisher sends, in the order they were handed over, every message for
another node, every presence change of this node's users, and the node's
heartbeat; what waits when it wakes goes in one pipeline (one round trip).
One thread on one connection is what keeps a sender's messages in order at
every other node (Redis delivers a connection's PUBLISHes in order). Each
PUBLISH answers how many subscribers took it: a message for a node that is
gone reaches nobody, and its recipients are then not `delivered`.

The subscriber listens to this node's channel, presence, accounts and the
"node gone" channel, and hands each message to the node (`Node`). When Redis
goes away it retries, and on its return the node resynchronises (`Node.resync`)
before anything else is read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import redis

from chat.server.cluster.box import Box
from chat.server.cluster.link import Link

log = logging.getLogger("chat.server.cluster")

PRESENCE = "chat:presence"
ACCOUNTS = "chat:accounts"
GONE = "chat:gone"
_encode = msgspec.json.Encoder().encode
_decode_head = msgspec.json.Decoder(tuple[str, str, list[str] | None]).decode
_decode_presence = msgspec.json.Decoder(tuple[str, str, str]).decode
_RETRY = 0.5  # seconds between attempts to reach Redis again
# Messages the subscriber takes from its socket before it sends what they fanned out: one
# send() per recipient per batch instead of per message (a frame each cost 3x the node's CPU).
_BATCH = 256


def node_channel(node: str) -> str:
    return f"chat:node:{node}"


def node_users(node: str) -> str:
    return f"chat:node:{node}:users"


class Node(Protocol):
    """What the relay hands over (`cluster.node.ClusterNode`)."""

    def deliver(self, sender: str, names: list[str] | None, frames: bytes) -> None: ...

    def presence(self, kind: str, node: str, name: str) -> None: ...

    def end_batch(self) -> None:
        """What `deliver` and `presence` queued since the last call goes out now."""

    def gone(self, node: str) -> None: ...

    def learned(self, blind: str) -> None: ...

    def resync(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Publish:
    channel: str
    payload: bytes
    then: Callable[[int], None] | None  # how many subscribers took it (-1: Redis failed)


@dataclass(frozen=True, slots=True)
class _Script:
    script: Any  # redis Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]


class Relay:
    def __init__(self, link: Link, box: Box, node_id: str) -> None:
        self._link = link
        self._box = box
        self.node_id = node_id
        self._jobs: deque[_Publish | _Script] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._pub = link.make_client()
        self._publisher = threading.Thread(
            target=self._publish_loop, name="cluster-pub", daemon=True
        )
        self._subscriber: threading.Thread | None = None

    def start(self, node: Node) -> None:
        self._publisher.start()
        self._subscriber = threading.Thread(
            target=self._subscribe_loop, args=(node,), name="cluster-sub", daemon=True
        )
        self._subscriber.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._publisher.join(5)

    # ---- any thread: hand over, in order -------------------------------------------
    def send(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[int], None] | None,
    ) -> None:
        """`msg` frames (encoded once, by the sender's node) for `names` (None: everyone
        but the sender) on another node: the receiver only unseals and fans them out."""
        channel = node_channel(node)
        head = _encode((self.node_id, sender, None if names is None else list(names)))
        body = len(head).to_bytes(4, "big") + head + frames
        self._put(_Publish(channel, self._box.seal(channel.encode(), body), then))

    def script(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        """A Lua script (presence changes, the heartbeat), in order with the messages."""
        self._put(_Script(script, tuple(keys), tuple(args)))

    def seal_presence(self, kind: str, name: str) -> bytes:
        return self._box.seal(PRESENCE.encode(), _encode((kind, self.node_id, name)))

    def _put(self, job: _Publish | _Script) -> None:
        with self._cond:
            self._jobs.append(job)
            if len(self._jobs) == 1:
                self._cond.notify()

    # ---- publisher thread ----------------------------------------------------------------
    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._jobs:
                    return
                batch = list(self._jobs)
                self._jobs.clear()
            self._run(batch)

    def _run(self, batch: list[_Publish | _Script]) -> None:
        pipe = self._pub.pipeline(transaction=False)
        for job in batch:
            if isinstance(job, _Publish):
                pipe.publish(job.channel, job.payload)
            else:
                job.script(keys=job.keys, args=job.args, client=pipe)
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self._link.failed(exc)
            results = [exc] * len(batch)
        else:
            if not any(isinstance(r, redis.ConnectionError) for r in results):
                self._link.works()
        for job, result in zip(batch, results, strict=True):
            if isinstance(job, _Publish) and job.then is not None:
                job.then(result if isinstance(result, int) else -1)
            elif isinstance(result, Exception) and not isinstance(job, _Publish):
                log.warning("cluster: a presence update did not reach redis: %s", result)

    # ---- subscriber thread -------------------------------------------------------------------
    def _subscribe_loop(self, node: Node) -> None:
        channels = [node_channel(self.node_id), PRESENCE, ACCOUNTS, GONE]
        first = True
        while True:
            pubsub = None
            try:
                pubsub = self._link.make_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(*channels)
                if not first:
                    node.resync()  # what happened while Redis was away
                first = False
                self._link.works()
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    taken = 0
                    try:
                        while message is not None:
                            self._handle(node, message)
                            taken += 1
                            message = pubsub.get_message(timeout=0.0) if taken < _BATCH else None
                    finally:
                        if taken:
                            node.end_batch()
            except redis.RedisError as exc:
                self._link.failed(exc)
            except Exception:  # a bug must not end cross-node delivery for good
                log.exception("cluster subscriber failed")
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        pubsub.close()
            time.sleep(_RETRY)

    def _handle(self, node: Node, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        data = message["data"]
        if channel == ACCOUNTS:
            node.learned(bytes(data).decode())
            return
        if channel == GONE:
            node.gone(bytes(data).decode())
            return
        plain = self._box.open(channel.encode(), bytes(data))
        if plain is None:
            log.error("cluster: a message on %s does not open (another key?): dropped", channel)
            return
        try:
            if channel == PRESENCE:
                kind, origin, name = _decode_presence(plain)
                if origin != self.node_id:
                    node.presence(kind, origin, name)
                return
            size = int.from_bytes(plain[:4], "big")
            _origin, sender, names = _decode_head(plain[4 : 4 + size])
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster: a message on %s does not decode: dropped", channel)
            return
        node.deliver(sender, names, plain[4 + size :])
