"""The broker seam over Redis: messages for other nodes' users, and messages for ours.

Each node has an inbox, a log (cluster/bus.py: a channel whose messages are
numbered and kept for a while beside it, in one slot). One publisher thread
sends, in the order they were handed over, every message for another node;
what waits when it wakes for one node is packed into one sealed publish (one
seal, one script, one message through Redis per node per turn: a busy sender's
messages share them), and those go in one pipeline per Redis node (one round
trip each, and a node that is away costs only what it serves). One thread on one
connection per Redis node is what keeps a sender's messages in order at every
other node, and the numbers keep them in order whatever the subscription
missed.

Whether the other node took a message: the publish script answers how many
subscribers took it live. One (its node) is `delivered`. None means the node is
gone, or its subscription is moving with its slot (a Redis Cluster reshard):
the message waits, noted in the log, for at most `SETTLE` seconds; if the node
catches up meanwhile (it reads its log again once subscribed again) it is
`delivered`, else it is given up, which a catch-up then skips: its recipients
are not `delivered` (queued), and never get it twice. While Redis is known to
be away, a publish is answered "not taken" at once.

One subscriber thread listens to this node's inbox, on connections of its own
(presence has others: cluster/presence.py), takes each message once, in order
(`bus.Follower`), and hands it to the core's fan-out (`Deliverer`), sending once
per batch. Both threads start in `start` and are joined by `stop`.

A message carries its kind (protocol v1.2 section 10): `msg` (for names, or
everyone), `echo` (the sender's own message, for its sessions there granted
`echo`), `read` (the user's marker moved) and `typing`; only `msg` is
answered to its sender. A `msg` or `echo` crosses as what its frames are made
of (cluster/crossing.py: sender, recipients, time, ids, texts), not as the
frames: the receiving node rebuilds them through src/shared, byte for byte
what the sending node's recipients got. An inbox payload begins with its
format byte: `crossing.COMPACT` (2) is what a node writes; format 1 (frames
after a JSON head, issue 22's first packing) is still read, so a node of that
version still reaches an upgraded one (docs/cluster.md, "Redis key layout").

The publisher also sends the rooms' messages into their logs for the rooms'
broker (`send`, cluster/rooms.py), so a node's publishes, whatever they carry,
leave in the order they were handed over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import redis
from msgspec import Meta

from chat.server.cluster import bus, crossing, keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.core.broker import Deliverer
from chat.shared.messages import Msg
from chat.shared.notices import MARKER_BOUNDS

log = logging.getLogger("chat.server.cluster")


class _Head(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """Format 1 (read, no longer written): what precedes the frames of one message between
    nodes (a message to everyone is `["m","alice"]`)."""

    kind: str  # MSG, ECHO, READ, TYPING
    sender: str  # the user who sent, read or types
    names: list[str] | None = None  # msg: the recipients (None: everyone); typing: them
    peer: str = ""  # read: the conversation; typing: the room ("" for names)
    upto: Annotated[int, Meta(ge=MARKER_BOUNDS[0], le=MARKER_BOUNDS[1])] = 0  # read: how far


MSG, ECHO, READ, TYPING = "m", "e", "r", "t"
#: The first byte of an inbox payload of format 1 (read, no longer written): a batch of
#: items, each `<4-byte length><item>`, an item `<4-byte head length><head><frames>`. What
#: a node writes is `crossing.COMPACT`.
_PACKED = b"\x01"
#: Bytes of items packed into one publish at most (a burst is split in several).
PACK_BYTES = 256 * 1024

_decode_head = msgspec.json.Decoder(_Head).decode
_RETRY = 0.5  # seconds between attempts to reach Redis again
# Messages the subscriber takes before it sends what they fanned out: one send() per
# recipient per batch instead of per message (a frame each cost 3x the node's CPU).
_BATCH = 256
_JOIN = 5.0
#: Seconds a message no subscriber took waits for its node to catch up before it is given
#: up (below the `sent`'s deadline, app.CROSSING_DEADLINE, so the `sent` can say which).
SETTLE = 0.3
_SETTLE_EVERY = 0.05
#: Messages an inbox's stream keeps for a catch-up (a node subscribing again after a slot
#: move reads what it missed from there).
INBOX_KEEPS = 2000


@dataclass(slots=True)
class _Publish:
    log: bus.Log
    payload: bytes
    then: Callable[[bool], None]
    #: An inbox item not sealed yet: packed with the others for its node into one sealed
    #: publish by the publisher thread (`_pack`).
    item: bool = False
    #: What its `settle` asks with (`bus.Log.mark`), given when it goes into a pipeline.
    mark: str = ""


class _Together:
    """The `then` of a packed publish: each of its messages told the one outcome."""

    __slots__ = ("thens",)

    def __init__(self, thens: list[Callable[[bool], None]]) -> None:
        self.thens = thens

    def __call__(self, taken: bool) -> None:
        for then in self.thens:
            _tell(then, taken)


class _AllOf:
    """The `then` of a message handed over as several items (runs of ids, crossing.msgs):
    told once, when all are answered, taken only if every one was."""

    __slots__ = ("_left", "_lock", "_taken", "then")

    def __init__(self, count: int, then: Callable[[bool], None]) -> None:
        self._lock = threading.Lock()
        self._left = count
        self._taken = True
        self.then = then

    def __call__(self, taken: bool) -> None:
        with self._lock:
            self._taken = self._taken and taken
            self._left -= 1
            if self._left:
                return
        self.then(self._taken)


@dataclass(slots=True)
class _Unsettled:
    log: bus.Log
    number: int
    mark: str
    then: Callable[[bool], None]
    since: float = field(default_factory=time.monotonic)


class RedisBroker:
    def __init__(self, link: Link, box: Box, node_id: str) -> None:
        self._link = link
        self._box = box
        self.node_id = node_id
        self._jobs: deque[_Publish] = deque()
        self._unsettled: list[_Unsettled] = []  # the publisher thread's own
        self._logs: dict[str, bus.Log] = {}
        self._inbox = bus.Log(link, keys.node_inbox(node_id), INBOX_KEEPS, settles=True)
        #: Waited on by two threads (the subscriber's retries too): every notify is a
        #: notify_all, or one could wake the wrong thread and leave the other asleep.
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._threads: list[threading.Thread] = []
        #: The subscribing thread's, woken by `stop` (its poll would wait out its second).
        self._subscriber: bus.Subscriber | None = None

    def start(self, deliverer: Deliverer) -> None:
        """Subscribed before the node serves anyone (RedisError when Redis does not answer):
        nothing sent to it is missed."""
        follower = bus.Follower(self._link, [self._inbox])
        follower.start()
        subscriber = self._subscriber = bus.Subscriber(self._link, [self._inbox.channel])
        subscriber.open()
        self._threads = [
            threading.Thread(target=self._publish_loop, name="cluster-pub"),
            threading.Thread(
                target=self._subscribe_loop,
                args=(deliverer, subscriber, follower),
                name="cluster-sub",
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
            self._cond.notify_all()
        if self._subscriber is not None:
            self._subscriber.wake()
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
        msgs: Sequence[Msg],
        then: Callable[[bool], None],
    ) -> None:
        """`msgs` for `names` (None: everyone but the sender) on another node, which
        rebuilds their frames (crossing.py). ValueError for what cannot cross as asked."""
        self._to_node(node, crossing.msgs(sender, names, msgs), then)

    def echo(self, node: str, sender: str, msgs: Sequence[Msg]) -> None:
        self._to_node(node, crossing.echo(sender, msgs), _ignore)

    def read(self, node: str, user: str, peer: str, upto: int) -> None:
        self._to_node(node, [crossing.read(user, peer, upto)], _ignore)

    def typing(
        self, node: str, sender: str, names: Sequence[str], room: str | None, frame: bytes
    ) -> None:
        self._to_node(node, [crossing.typing(sender, names, room, frame)], _ignore)

    def send(self, target: bus.Log, payload: bytes, then: Callable[[bool], None]) -> None:
        """A sealed payload for a log (the rooms' broker's), in this publisher's order;
        `then(published)`: whether Redis took it (not whether anyone listened)."""
        self._queue(_Publish(target, payload, then))

    def _to_node(self, node: str, items: list[bytes], then: Callable[[bool], None]) -> None:
        channel = keys.node_inbox(node)
        if not self._link.reachable(channel):
            then(False)  # Redis is known to be away: no wait for what cannot be taken
            return
        target = self._log(channel)
        if len(items) > 1:  # seldom: a group's ids are one run (Store.stamp)
            then = _AllOf(len(items), then)
        for item in items:
            self._queue(_Publish(target, item, then, True))

    def _log(self, channel: str) -> bus.Log:
        found = self._logs.get(channel)
        if found is None:
            found = self._logs[channel] = bus.Log(self._link, channel, INBOX_KEEPS, settles=True)
        return found

    def _queue(self, job: _Publish) -> None:
        if not self._link.reachable(job.log.channel):
            _tell(job.then, False)
            return
        with self._cond:
            if self._stopping:
                refused = True
            else:
                refused = False
                self._jobs.append(job)
                if len(self._jobs) == 1:
                    self._cond.notify_all()
        if refused:
            _tell(job.then, False)

    # ---- publisher thread ---------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    if self._unsettled:
                        self._cond.wait(_SETTLE_EVERY)
                        break
                    if self._link.up:
                        self._cond.wait()
                    else:  # publishes are refused while Redis is away: look for its return
                        self._cond.wait(_RETRY)
                        if not self._jobs and not self._stopping:
                            break
                if self._stopping and not self._jobs:
                    for left in self._unsettled:  # no time left to wait: not taken
                        _tell(left.then, False)
                    self._unsettled.clear()
                    return
                batch = list(self._jobs)
                self._jobs.clear()
            try:
                if batch:
                    self._run(batch)
                elif not self._link.up:
                    self._probe()
                if self._unsettled:
                    self._settle()
            except Exception:  # a bug must not stop cross-node delivery, nor leave a sender
                log.exception("cluster: publishing a batch failed")
                for job in batch:
                    _tell(job.then, False)

    def _probe(self) -> None:
        """Is Redis back? (Nothing else tells this broker while it refuses to publish.)"""
        try:
            self._link.check()
        except Exception:
            log.exception("cluster: probing redis failed")

    def _pack(self, batch: list[_Publish]) -> list[_Publish]:
        """What waits for each node's inbox as one sealed publish (a few when a burst is
        big): one script, one XADD, one message through Redis and one seal per node per
        turn, not per message (issue "6 of 6", cheaper crossings). Each inbox keeps its
        order; the rooms' payloads, sealed already, go as they are."""
        out: list[_Publish] = []
        packs: dict[str, list[_Publish]] = {}
        for job in batch:
            if job.item:
                packs.setdefault(job.log.channel, []).append(job)
            else:
                out.append(job)
        for channel, jobs in packs.items():
            start = 0
            while start < len(jobs):
                size, end = 0, start
                while end < len(jobs) and (
                    end == start or size + len(jobs[end].payload) <= PACK_BYTES
                ):
                    size += len(jobs[end].payload)
                    end += 1
                part = jobs[start:end]
                plain = crossing.payload([j.payload for j in part])
                sealed = self._box.seal(channel.encode(), plain)
                then = part[0].then if len(part) == 1 else _Together([j.then for j in part])
                out.append(_Publish(part[0].log, sealed, then))
                start = end
        return out

    def _run(self, batch: list[_Publish]) -> None:
        batch = self._pack(batch)
        for node, group in bus.by_node(self._link, batch, _log_of):
            results = self._pipeline(node, group)
            for job, result in zip(group, results, strict=True):
                self._outcome(node, job, result)

    def _pipeline(self, node: str, group: list[_Publish]) -> list[Any]:
        """One pipeline for one Redis node, each publish sent once (one that timed out may
        have run: sent again, it would come twice). A script the node lacks is loaded and
        what it refused sent again; so is what a moving slot redirected (not run either)."""
        pipe = self._link.client.pipeline(transaction=False)
        for job in group:
            if job.log.settles:
                job.mark = job.log.mark()
            job.log.publish(pipe, job.payload, job.mark)
        try:
            results = self._link.execute_once(pipe)
        except redis.RedisError as exc:
            self._link.failed(exc, node or None)
            return [exc] * len(group)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            try:
                self._link.load_scripts()
            except redis.RedisError as exc:
                self._link.failed(exc, node or None)
        for i, result in enumerate(results):
            if isinstance(result, _NOT_RUN):  # again, alone: redis-py follows a redirection
                try:
                    job = group[i]
                    results[i] = job.log.publish(self._link.client, job.payload, job.mark)
                except redis.RedisError as exc:
                    results[i] = exc
        if not any(isinstance(r, redis.ConnectionError | redis.TimeoutError) for r in results):
            self._link.works(node or None)
        return results

    def _outcome(self, node: str, job: _Publish, result: Any) -> None:
        if isinstance(result, Exception):
            if isinstance(result, redis.ConnectionError | redis.TimeoutError):
                self._link.failed(result, node or None)
            _tell(job.then, False)
            return
        number, took = int(result[0]), int(result[1])
        if took > 0 or not job.log.settles:
            _tell(job.then, True)
        else:  # nobody took it live: its node may be catching up (a slot moving)
            self._unsettled.append(_Unsettled(job.log, number, job.mark, job.then))

    def _settle(self) -> None:
        """Ask about the messages nobody took: taken by a catch-up since, or given up now
        (their time is over), or not yet."""
        now = time.monotonic()
        ask = [u for u in self._unsettled if now - u.since >= _SETTLE_EVERY]
        if not ask:
            return
        for node, group in bus.by_node(self._link, ask, _log_of):
            pipe = self._link.client.pipeline(transaction=False)
            for u in group:
                u.log.settle(pipe, u.number, u.mark, now - u.since >= SETTLE)
            try:
                results = self._link.execute_once(pipe)
            except redis.RedisError as exc:
                self._link.failed(exc, node or None)
                results = [exc] * len(group)
            for u, result in zip(group, results, strict=True):
                if isinstance(result, Exception):
                    if now - u.since < SETTLE:
                        continue  # asked again at the next turn
                    if isinstance(result, redis.exceptions.NoScriptError):
                        self._link.load_scripts()
                        continue
                    result = 0
                if int(result) == -1:
                    continue
                self._unsettled.remove(u)
                _tell(u.then, int(result) == 1)

    # ---- subscriber thread ----------------------------------------------------------------------
    def _subscribe_loop(
        self, deliverer: Deliverer, subscriber: bus.Subscriber, follower: bus.Follower
    ) -> None:
        behind = True  # read the inbox from the last number first: what came before the start
        try:
            while not self._stopping:
                taken = 0
                try:
                    payloads: list[bytes] = []
                    failed: redis.RedisError | None = None
                    try:
                        if behind:
                            payloads = follower.again(self._inbox.channel)
                            behind = False
                        for event in subscriber.poll(0.0 if payloads else 1.0):
                            if isinstance(event, bus.Again):
                                payloads += follower.again(self._inbox.channel)
                            else:
                                payloads += follower.take(event.channel, event.data)
                    except redis.RedisError as exc:
                        # What was taken before it is handed over all the same: the follower
                        # has moved past it (the likely way the chaos soak lost room messages).
                        failed = exc
                    follower.broken.clear()  # lost messages were logged: nothing to read anew
                    for payload in payloads:
                        before = taken
                        taken += self._handle(deliverer, payload)
                        if taken // _BATCH != before // _BATCH:
                            self._delivered(deliverer)
                    if failed is not None:
                        raise failed
                except redis.RedisError as exc:
                    self._link.failed(exc)
                    behind = True
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(_RETRY)
                except Exception:  # a bug must not end cross-node delivery for good
                    log.exception("cluster: the message subscriber failed; it goes on")
                    behind = True
                finally:
                    if taken % _BATCH:
                        self._delivered(deliverer)
        finally:
            subscriber.close()

    @staticmethod
    def _delivered(deliverer: Deliverer) -> None:
        try:
            deliverer.delivered()
        except Exception:
            log.exception("cluster: sending a batch from another node failed")

    def _handle(self, deliverer: Deliverer, data: bytes) -> int:
        """Hand over every item of one inbox payload; how many there were."""
        channel = self._inbox.channel
        plain = self._box.open(channel.encode(), data)
        if plain is None:
            log.error("cluster: a message on %s does not open (another key?): dropped", channel)
            return 0
        kind = plain[:1]
        if kind == crossing.COMPACT:
            return self._compact(deliverer, memoryview(plain)[1:])
        if kind == _PACKED:
            return self._format_1(deliverer, plain)
        log.error("cluster: a message on %s is of an unknown format %r: dropped", channel, kind)
        return 0

    def _compact(self, deliverer: Deliverer, body: memoryview) -> int:
        channel = self._inbox.channel
        try:
            raws = crossing.items(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("cluster: a message on %s does not decode (%s): dropped", channel, exc)
            return 0
        dropped: list[str] = []
        for raw in raws:
            try:
                item = crossing.item(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                dropped.append(str(exc))
                continue
            try:
                match item:
                    case crossing.Msgs():
                        deliverer.deliver(item.sender, item.names, item.frames())
                    case crossing.Echo():
                        deliverer.echo(item.sender, item.frames())
                    case crossing.Read():
                        deliverer.read(item.user, item.peer, item.upto)
                    case crossing.Typing():
                        deliverer.typing(item.sender, item.names, item.room, item.frame)
            except Exception:  # one message's bug: the next ones still come
                log.exception("cluster: delivering a message from another node failed")
        if dropped:  # once per payload, however many
            log.error(
                "cluster: %d of %d items on %s do not decode (%s): dropped",
                len(dropped),
                len(raws),
                channel,
                dropped[0],
            )
        return len(raws)

    def _format_1(self, deliverer: Deliverer, plain: bytes) -> int:
        """A payload of format 1 (a node of the version before, during an upgrade): its
        frames as they came."""
        view = memoryview(plain)
        at, end, count = 1, len(plain), 0
        while at + 4 <= end:
            size = int.from_bytes(view[at : at + 4], "big")
            item = plain[at + 4 : at + 4 + size]
            at += 4 + size
            count += 1
            try:
                self._item(deliverer, item)
            except Exception:  # one message's bug: the next ones still come
                log.exception("cluster: delivering a message from another node failed")
        return count

    def _item(self, deliverer: Deliverer, item: bytes) -> None:
        channel = self._inbox.channel
        try:
            size = int.from_bytes(item[:4], "big")
            head = _decode_head(item[4 : 4 + size])
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster: a message on %s does not decode: dropped", channel)
            return
        frames = item[4 + size :]
        match head.kind:
            case "m":
                deliverer.deliver(head.sender, head.names, frames)
            case "e":
                deliverer.echo(head.sender, frames)
            case "r":
                deliverer.read(head.sender, head.peer, head.upto)
            case "t":
                deliverer.typing(head.sender, head.names or (), head.peer or None, frames)
            case _:
                log.error(
                    "cluster: a message of unknown kind %r on %s: dropped", head.kind, channel
                )


#: What a pipeline's command met that means it did not run (sent again, alone).
_NOT_RUN = (
    redis.exceptions.NoScriptError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)


def _log_of(item: _Publish | _Unsettled) -> bus.Log:
    return item.log


def _ignore(taken: bool) -> None:
    """What is told, not answered (echo, read, typing): lost with Redis, like typing."""


def _tell(then: Callable[[bool], None], taken: bool) -> None:
    try:
        then(taken)
    except Exception:
        log.exception("cluster: telling a publish's outcome failed")
