"""The broker seam over Redis: messages for other nodes' users, and messages for ours.

One publisher thread sends, in the order they were handed over, every message
for another node; what waits when it wakes goes in one pipeline (one round
trip). One thread on one connection is what keeps a sender's messages in
order at every other node (Redis delivers a connection's PUBLISHes in order).
Each PUBLISH answers how many subscribers took it: a message for a node that
is gone reaches nobody, and its recipients are then not `delivered`. While
Redis is known to be away, a publish is answered "not taken" at once.

One subscriber thread listens to this node's inbox channel, on a connection
of its own (presence has another: cluster/presence.py), and hands each
message to the core's fan-out (`Deliverer`), sending once per batch. Both
threads start in `start` and are joined by `stop`.

A message carries its kind (protocol v1.2 section 10): `msg` (for names, or
everyone), `echo` (the sender's own message, for its sessions there granted
`echo`), `read` (the user's marker moved) and `typing`; only `msg` is
answered to its sender. The publisher also sends the rooms' messages into
their channel for the rooms' broker (`send`, cluster/rooms.py), so a node's
publishes, whatever they carry, leave in the order they were handed over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.core.broker import Deliverer

log = logging.getLogger("chat.server.cluster")


class _Head(msgspec.Struct, array_like=True, frozen=True):
    """What precedes the frames of one message between nodes."""

    origin: str
    kind: str  # msg, echo, read, typing
    sender: str  # the user who sent, read or types
    names: list[str] | None = None  # msg: the recipients (None: everyone); typing: them
    peer: str = ""  # read: the conversation; typing: the room ("" for names)
    upto: int = 0  # read: how far


_encode = msgspec.json.Encoder().encode
_decode_head = msgspec.json.Decoder(_Head).decode
_RETRY = 0.5  # seconds between attempts to reach Redis again
# Messages the subscriber takes from its socket before it sends what they fanned out: one
# send() per recipient per batch instead of per message (a frame each cost 3x the node's CPU).
_BATCH = 256
_JOIN = 5.0


@dataclass(frozen=True, slots=True)
class _Publish:
    channel: str
    payload: bytes
    then: Callable[[bool], None]
    #: Taken only when a subscriber got it (a node's inbox); else when Redis took it.
    counted: bool = True


class RedisBroker:
    def __init__(self, link: Link, box: Box, node_id: str) -> None:
        self._link = link
        self._box = box
        self.node_id = node_id
        self._jobs: deque[_Publish] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self, deliverer: Deliverer) -> None:
        # Subscribed before the node serves anyone: nothing sent to it is missed.
        pubsub = self._subscribe()
        self._threads = [
            threading.Thread(target=self._publish_loop, name="cluster-pub"),
            threading.Thread(
                target=self._subscribe_loop, args=(deliverer, pubsub), name="cluster-sub"
            ),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def backlog(self) -> int:
        """Publishes waiting for Redis (for the metrics)."""
        return len(self._jobs)

    def stop(self) -> None:
        """Publish what was handed over (within the link's timeout), then join both threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        for thread in self._threads:
            thread.join(_JOIN)
            if thread.is_alive():
                log.error("cluster: thread %s did not stop in time", thread.name)

    # ---- any thread: hand over, in order --------------------------------------------------
    def publish(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[bool], None],
    ) -> None:
        """`msg` frames (encoded once, by the sender's node) for `names` (None: everyone
        but the sender) on another node: the receiver only unseals and fans them out."""
        head = _Head(self.node_id, "msg", sender, None if names is None else list(names))
        self._to_node(node, head, frames, then)

    def echo(self, node: str, sender: str, frames: bytes) -> None:
        self._to_node(node, _Head(self.node_id, "echo", sender), frames, _ignore)

    def read(self, node: str, user: str, peer: str, upto: int) -> None:
        self._to_node(node, _Head(self.node_id, "read", user, None, peer, upto), b"", _ignore)

    def typing(
        self, node: str, sender: str, names: Sequence[str], room: str | None, frame: bytes
    ) -> None:
        head = _Head(self.node_id, "typing", sender, list(names), room or "")
        self._to_node(node, head, frame, _ignore)

    def send(self, channel: str, payload: bytes, then: Callable[[bool], None]) -> None:
        """A sealed payload for `channel` (the rooms' broker's), in this publisher's order;
        `then(published)`: whether Redis took it (not whether anyone listened)."""
        self._queue(_Publish(channel, payload, then, counted=False))

    def _to_node(self, node: str, head: _Head, frames: bytes, then: Callable[[bool], None]) -> None:
        if not self._link.up:
            then(False)  # Redis is known to be away: no wait for what cannot be taken
            return
        channel = keys.node_inbox(node)
        encoded = _encode(head)
        body = len(encoded).to_bytes(4, "big") + encoded + frames
        self._queue(_Publish(channel, self._box.seal(channel.encode(), body), then))

    def _queue(self, job: _Publish) -> None:
        if not self._link.up:
            _tell(job.then, False)
            return
        with self._cond:
            if self._stopping:
                refused = True
            else:
                refused = False
                self._jobs.append(job)
                if len(self._jobs) == 1:
                    self._cond.notify()
        if refused:
            _tell(job.then, False)

    # ---- publisher thread ---------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    if self._link.up:
                        self._cond.wait()
                    else:  # publishes are refused while Redis is away: look for its return
                        self._cond.wait(_RETRY)
                        if not self._jobs and not self._stopping:
                            break
                if self._stopping and not self._jobs:
                    return
                batch = list(self._jobs)
                self._jobs.clear()
            if not batch:
                self._probe()
                continue
            try:
                self._run(batch)
            except Exception:  # a bug must not stop cross-node delivery, nor leave a sender
                log.exception("cluster: publishing a batch failed")
                for job in batch:
                    _tell(job.then, False)

    def _probe(self) -> None:
        """Is Redis back? (Nothing else tells this broker while it refuses to publish.)"""
        try:
            self._link.client.ping()
        except redis.RedisError:
            return
        except Exception:
            log.exception("cluster: probing redis failed")
            return
        self._link.works()

    def _run(self, batch: list[_Publish]) -> None:
        pipe = self._link.client.pipeline(transaction=False)
        for job in batch:
            pipe.publish(job.channel, job.payload)
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self._link.failed(exc)
            results = [exc] * len(batch)
        else:
            if not any(isinstance(r, redis.ConnectionError) for r in results):
                self._link.works()
        for job, result in zip(batch, results, strict=True):
            _tell(job.then, isinstance(result, int) and (result > 0 or not job.counted))

    # ---- subscriber thread ----------------------------------------------------------------------
    def _subscribe(self) -> Any:
        pubsub = self._link.make_client().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.node_inbox(self.node_id))
        return pubsub

    def _subscribe_loop(self, deliverer: Deliverer, pubsub: Any) -> None:
        while not self._stopping:
            try:
                if pubsub is None:
                    pubsub = self._subscribe()
                self._link.works()
                while not self._stopping:
                    message = pubsub.get_message(timeout=1.0)
                    taken = 0
                    try:
                        while message is not None:
                            try:
                                self._handle(deliverer, message)
                            except Exception:  # one message's bug: the next ones still come
                                log.exception(
                                    "cluster: delivering a message from another node failed"
                                )
                            taken += 1
                            message = pubsub.get_message(timeout=0.0) if taken < _BATCH else None
                    finally:
                        if taken:
                            try:
                                deliverer.delivered()
                            except Exception:
                                log.exception("cluster: sending a batch from another node failed")
            except redis.RedisError as exc:
                self._link.failed(exc)
            except Exception:  # a bug must not end cross-node delivery for good
                log.exception("cluster: the message subscriber failed; it goes on")
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        pubsub.close()
                pubsub = None
            with self._cond:
                if not self._stopping:
                    self._cond.wait(_RETRY)

    def _handle(self, deliverer: Deliverer, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        plain = self._box.open(channel.encode(), bytes(message["data"]))
        if plain is None:
            log.error("cluster: a message on %s does not open (another key?): dropped", channel)
            return
        try:
            size = int.from_bytes(plain[:4], "big")
            head = _decode_head(plain[4 : 4 + size])
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster: a message on %s does not decode: dropped", channel)
            return
        frames = plain[4 + size :]
        match head.kind:
            case "msg":
                deliverer.deliver(head.sender, head.names, frames)
            case "echo":
                deliverer.echo(head.sender, frames)
            case "read":
                deliverer.read(head.sender, head.peer, head.upto)
            case "typing":
                deliverer.typing(head.sender, head.names or (), head.peer or None, frames)
            case _:
                log.error(
                    "cluster: a message of unknown kind %r on %s: dropped", head.kind, channel
                )


def _ignore(taken: bool) -> None:
    """What is told, not answered (echo, read, typing): lost with Redis, like typing."""


def _tell(then: Callable[[bool], None], taken: bool) -> None:
    try:
        then(taken)
    except Exception:
        log.exception("cluster: telling a publish's outcome failed")
