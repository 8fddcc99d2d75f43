"""The rooms' broker over Redis: every room change decided there, in one order for all nodes.

Protocol v1.2 section 10: a room's events and messages reach every member, on
every node, in one order. Redis is the authority on rooms (records and their
versions, cluster/state.py) and the log of the room's shard is that order
(`keys.room_channel`: rooms are spread over a fixed number of shards, each a
log of cluster/bus.py in the slot of its rooms' keys; one order per shard is one
order per room, and a log's numbers keep it whatever a subscription missed):

- A room request (create, join, leave, invite, kick, topic) runs on this
  node's *rooms* thread: WATCH the room's record, read it, run the room book's
  rule on a scratch book holding it (core/rooms.py; the per-user limits come
  from this node's replica), then MULTI: the new record (version + 1, or a
  tombstone with the history deleted) and the change's events into the shard's
  log (numbered, kept, published: one script, EVAL), EXEC; all in one slot.
  Another node's change in between fails the EXEC and the request runs again
  on what it did (a few times; while the slot moves to another node of a Redis
  Cluster, until the request's deadline). The requester is answered once this
  node's replica has applied the change (its own subscriber saw it come back),
  so a `send` right after a `join`'s `ok` finds the sender a member here.
- A room message is checked against the replica, given its ids, and published
  into the same log by the broker's publisher (cluster/broker.py `send`), as its
  parts (`crossing.Post`: sender, time, ids, texts), from which every node
  rebuilds the frames through src/shared, the bytes of the sender's node.
- The *rooms-sub* thread takes the logs in order and hands everything to
  the core (`RoomFeed`): a change is applied as facts when its version is
  newer than the replica's (so what came while the node loaded its replica is
  not applied twice), and told to the members here; a message gets the same
  verdict on every node (the sender is a member in a replica that applied the
  same changes in the same order), is fanned out to the members here, and on
  the sender's node it is stored and its `sent` (or `not_member`) answered.

A node subscribes first, then reads every record (`start`): nothing published
meanwhile is missed. When a subscription breaks (a slot moved, Redis went
away), the shard's log is read again from the last number taken; only when the
log cannot make it good (Redis lost its data, or the stream no longer reaches
back) are every record read again. Both threads start in `start` and
are joined in `stop`; every Redis call has the link's timeout and no retry, and
the caller's deadline answers whoever waits (core/asks.py, core/fanout.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import redis
from msgspec import Meta
from redis.exceptions import TryAgainError

from chat.server.accounts.users_file import StoreError
from chat.server.cluster import bus, crossing, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import RedisBroker
from chat.server.cluster.link import Link
from chat.server.cluster.state import RedisState
from chat.server.cluster.url import ClusterError
from chat.server.core.broker import RoomAnswer, RoomFeed, RoomVerdict
from chat.server.core.desk import AccountGone, run_rule
from chat.server.core.rooms import Event, fold
from chat.shared.errors import Code, RemoteProtocolError, Trouble
from chat.shared.fields import MAX_ID
from chat.shared.messages import Msg
from chat.shared.requests import Request, RoomInvite

log = logging.getLogger("chat.server.cluster")

ATTEMPTS = 5  # a request's runs when other nodes keep changing its room meanwhile
_RETRY = 0.5
_JOIN = 5.0
_POSTED_FOR = 60.0  # seconds this node remembers a message of its own not yet back
_BATCH = 256  # channel items handled before what they queued is sent
#: Items each shard's stream keeps for a node that subscribes again (about a minute of a
#: busy shard: 256 shards of 200 are some 50,000 items in Redis at most).
ROOMS_KEEPS = 200
_MOVING = 0.02  # seconds between runs of a request whose slot is moving


_Count = Annotated[int, Meta(ge=0, le=MAX_ID)]


class _Fact(msgspec.Struct, array_like=True, frozen=True):
    event: str
    user: str
    ts: crossing.Ts
    by: str | None = None
    topic: str | None = None
    also: str | None = None
    invite_only: bool = False


class _Item(msgspec.Struct, array_like=True, frozen=True):
    """One item of the rooms channel: a change (`facts` at `version`) or a post (messages
    `first`..`last` from `sender`, its frames after this head)."""

    kind: str  # "change" or "post"
    origin: str  # the node that made it
    room: str  # the room's name (as created for a change, as written for a post)
    version: _Count = 0
    facts: list[_Fact] = []
    sender: str = ""
    skip: crossing.Slot = 0  # the sending connection's slot on its node
    first: _Count = 0
    last: _Count = 0

    def __post_init__(self) -> None:
        if self.skip > crossing.SLOT_MAX:
            raise ValueError(f"a connection's handle past {crossing.SLOT_MAX}")


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Item).decode


@dataclass(slots=True)
class _Job:
    name: str
    request: Request
    registered: bool
    expires: float
    done: RoomAnswer


@dataclass(slots=True)
class _Posted:
    msgs: tuple[Msg, ...]
    done: RoomVerdict
    at: float


class RedisRooms:
    def __init__(
        self,
        link: Link,
        box: Box,
        node_id: str,
        broker: RedisBroker,
        confirm: Callable[[Sequence[str]], frozenset[str]] | None = None,
    ) -> None:
        """`confirm`: the accounts' `confirm` (accounts/seam.py), for an invite of a name
        this node has not heard of (made a moment ago on another node)."""
        self._link = link
        self._confirm = confirm
        self._box = box
        self.node_id = node_id
        self._broker = broker
        self._state = RedisState(link, box)
        self._logs = {c: bus.Log(link, c, ROOMS_KEEPS) for c in keys.room_channels()}
        self._feed: RoomFeed | None = None
        #: Waited on by two threads (the subscriber's retries too): every notify is a
        #: notify_all, or one could wake the wrong thread and leave the other asleep.
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[_Job] = deque()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        #: The subscribing thread's, woken by `stop` (its poll would wait out its second).
        self._subscriber: bus.Subscriber | None = None
        self._lock = threading.Lock()  # what follows
        self._seen: dict[str, int] = {}  # folded name -> newest version applied here
        self._waiting: dict[str, list[tuple[int, RoomAnswer]]] = {}
        self._posted: dict[int, _Posted] = {}  # first id -> this node's messages not back
        self._next_forget = 0.0

    # ---- lifetime ---------------------------------------------------------------------------
    def start(self, feed: RoomFeed) -> None:
        """Subscribe, then read every room into the replica, then start both threads;
        ClusterError when Redis cannot be had (the node does not start)."""
        self._feed = feed
        follower = bus.Follower(self._link, self._logs.values())
        try:
            follower.start()
            subscriber = self._subscriber = bus.Subscriber(self._link, list(self._logs))
            subscriber.open()
            try:
                self._load(feed)
            except BaseException:
                subscriber.close()
                raise
        except redis.RedisError as exc:
            raise ClusterError(f"cluster {self._link.shown}: rooms: {exc}") from None
        self._threads = [
            threading.Thread(target=self._request_loop, name="cluster-rooms"),
            threading.Thread(
                target=self._channel_loop, args=(subscriber, follower), name="cluster-rooms-sub"
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        if self._subscriber is not None:
            self._subscriber.wake()
        for job in left:
            _answer(job.done, _trouble(job.request))
        for thread in self._threads:
            thread.join(_JOIN)
            if thread.is_alive():
                log.error("cluster: thread %s did not stop in time", thread.name)

    # ---- the core's calls (never wait) -----------------------------------------------------
    def request(
        self, name: str, request: Request, registered: bool, expires: float, done: RoomAnswer
    ) -> None:
        if not self._link.up:
            _answer(done, _trouble(request))  # Redis is known to be away: no wait
            return
        with self._cond:
            if not self._stopping:
                self._jobs.append(_Job(name, request, registered, expires, done))
                self._cond.notify_all()
                return
        _answer(done, _trouble(request))

    def post(
        self,
        sender: str,
        room: str,
        msgs: tuple[Msg, ...],
        frames: bytes,
        skip: int,
        done: RoomVerdict,
    ) -> None:
        first = msgs[0].id
        channel = keys.room_channel(self._state.room_blind(fold(room)))
        body = crossing.post(self.node_id, room, skip, msgs)
        if body is None:  # not one group of sends (never from the core): the frames
            head = _encode(
                _Item(
                    "post",
                    self.node_id,
                    room,
                    sender=sender,
                    skip=skip,
                    first=first,
                    last=msgs[-1].id,
                )
            )
            body = len(head).to_bytes(4, "big") + head + frames
        with self._lock:
            self._posted[first] = _Posted(msgs, done, time.monotonic())

        def published(ok: bool) -> None:
            if not ok:  # it will not come back: answered now, not at the deadline
                with self._lock:
                    lost = self._posted.pop(first, None)
                if lost is not None:
                    _answer(lost.done, False)

        sealed = self._box.seal(channel.encode(), body)
        self._broker.send(self._logs[channel], sealed, published)

    # ---- rooms thread: requests, one at a time ----------------------------------------------
    def _request_loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            if time.monotonic() >= job.expires:
                continue  # its deadline has answered it: nothing is done
            if not self._link.up:
                _answer(job.done, _trouble(job.request))
                continue
            try:
                self._run(job)
            except RemoteProtocolError as err:  # the rule's answer
                _answer(job.done, err)
            except redis.RedisError as exc:
                self._link.failed(exc)
                _answer(job.done, _trouble(job.request))
            except StoreError:  # the accounts' lookup met Redis away (the link said so)
                _answer(job.done, _trouble(job.request))
            except Exception:  # a bug: logged, answered, the thread goes on
                log.exception("cluster: a room request failed")
                error = RemoteProtocolError(Code.RATE_LIMITED, Trouble.INTERNAL, job.request.id)  # type: ignore[attr-defined]
                _answer(job.done, error)

    def _run(self, job: _Job) -> None:
        """WATCH, read, decide, MULTI/EXEC; again when another node changed the room (or
        its slot is moving to another node of a Redis Cluster: until the request's time is
        up)."""
        feed, state, request = self._feed, self._state, job.request
        assert feed is not None
        folded = fold(request.room)  # type: ignore[attr-defined]
        key = state.room_key(folded)
        room_log = self._logs[keys.room_channel(state.room_blind(folded))]
        users = [job.name]
        registered = job.registered
        if isinstance(request, RoomInvite):
            users.append(request.user)  # its invites are counted
            if not registered and self._confirm is not None:
                # This node has not heard of the name: Redis decides (an account made a
                # moment ago on another node is invited, not answered `no_such_user`).
                registered = request.user in self._confirm([request.user])
        client = self._link.client
        runs = 0
        while runs < ATTEMPTS:
            runs += 1
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    opened = state.open_room(key, pipe.get(key))
                    version, room = (opened[0], opened[1]) if opened is not None else (0, None)
                    book = feed.scratch(folded, room, users)
                    change = run_rule(book, job.name, request, registered, time.time())
                    gone = isinstance(request, AccountGone) and change.room is not None
                    if not change.events and not gone:  # nothing happens (joins again): ok
                        self._link.works()
                        _answer(job.done, None)
                        return
                    name = change.events[0].room if change.events else change.room.name  # type: ignore[union-attr]
                    if room is None:  # a new room: indexed first (the index only grows)
                        client.sadd(keys.ROOMS, state.room_blind(folded))
                    new = version + 1
                    pipe.multi()
                    pipe.set(key, state.seal_room(key, new, change.room, name))
                    if change.deleted:
                        pipe.delete(state.history_key(folded))
                    room_log.publish_in(pipe, self._seal_change(room_log, name, new, change.events))
                    pipe.execute()
                except (redis.WatchError, TryAgainError) as exc:
                    cause = exc.__cause__ if isinstance(exc, redis.WatchError) else exc
                    if isinstance(cause, redis.ConnectionError | redis.TimeoutError):
                        raise cause from None
                    if isinstance(cause, redis.ResponseError):  # the slot is moving
                        if time.monotonic() + _MOVING >= job.expires:
                            break
                        runs -= 1
                        time.sleep(_MOVING)
                    continue
            self._link.works()
            self._when_applied(folded, new, job.done)
            return
        log.warning("cluster: a room request gave up after %d runs (its room kept changing)", runs)
        _answer(job.done, _trouble(request))

    def _seal_change(
        self, room_log: bus.Log, room: str, version: int, events: tuple[Event, ...]
    ) -> bytes:
        facts = [_Fact(e.event, e.user, e.ts, e.by, e.topic, e.also, e.invite_only) for e in events]
        head = _encode(_Item("change", self.node_id, room, version, facts))
        body = len(head).to_bytes(4, "big") + head
        return self._box.seal(room_log.channel.encode(), body)

    def _when_applied(self, folded: str, version: int, done: RoomAnswer) -> None:
        """Answer once this node's replica has the change (its subscriber saw it)."""
        with self._lock:
            if self._seen.get(folded, 0) < version:
                self._waiting.setdefault(folded, []).append((version, done))
                return
        _answer(done, None)

    # ---- rooms-sub thread: the logs, in order ------------------------------------------------
    def _load(self, feed: RoomFeed) -> None:
        rooms, versions = self._state.load_records()
        feed.reset(rooms, versions)
        self._saw(versions)
        log.info("cluster: %d rooms read", len(rooms))

    def _channel_loop(self, subscriber: bus.Subscriber, follower: bus.Follower) -> None:
        feed = self._feed
        assert feed is not None
        behind = set(follower.channels())  # what came between the start's reads and now
        try:
            while not self._stopping:
                taken = 0
                try:
                    items: list[tuple[str, bytes]] = []
                    failed: redis.RedisError | None = None
                    try:
                        while behind:  # logs to read again (each removed once read)
                            channel = next(iter(behind))
                            items += [(channel, p) for p in follower.again(channel)]
                            behind.discard(channel)
                        for event in subscriber.poll(0.0 if items else 1.0):
                            if isinstance(event, bus.Again):
                                for channel in event.channels:
                                    items += [(channel, p) for p in follower.again(channel)]
                            else:
                                items += [
                                    (event.channel, p)
                                    for p in follower.take(event.channel, event.data)
                                ]
                    except redis.RedisError as exc:
                        # What was taken before it is applied all the same: the follower has
                        # moved past it (the likely way the chaos soak lost two room messages).
                        failed = exc
                    if follower.broken:  # the logs could not make good what was missed
                        follower.broken.clear()
                        self._load(feed)
                    for channel, payload in items:
                        try:
                            self._handle(feed, channel, payload)
                        except Exception:  # one item's bug: the next ones still come
                            log.exception("cluster: a rooms channel item failed")
                        taken += 1
                        if taken % _BATCH == 0:
                            self._settled(feed)
                    self._forget_old()
                    if failed is not None:
                        raise failed
                except redis.RedisError as exc:
                    self._link.failed(exc)
                    behind = set(follower.channels())
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(_RETRY)
                except Exception:
                    log.exception("cluster: the rooms subscriber failed; it goes on")
                finally:
                    if taken % _BATCH:
                        self._settled(feed)
        finally:
            subscriber.close()

    @staticmethod
    def _settled(feed: RoomFeed) -> None:
        try:
            feed.settled()
        except Exception:
            log.exception("cluster: sending a batch of room items failed")

    def _handle(self, feed: RoomFeed, channel: str, data: bytes) -> None:
        plain = self._box.open(channel.encode(), data)
        if plain is None:
            log.error("cluster: a rooms channel item does not open (another key?): dropped")
            return
        if plain[:1] == crossing.POST:
            try:
                post = crossing.posted(memoryview(plain)[1:])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("cluster: a room's messages do not decode (%s): dropped", exc)
                return
            item = _Item(
                "post",
                post.origin,
                post.room,
                sender=post.sender,
                skip=post.skip,
                first=post.first,
                last=post.last,
            )
            self._post(feed, item, post.frames())
            return
        try:
            size = int.from_bytes(plain[:4], "big")
            item = _decode(plain[4 : 4 + size])
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster: a rooms channel item does not decode: dropped")
            return
        if item.kind == "change":
            self._change(feed, item)
        elif item.kind == "post":
            self._post(feed, item, plain[4 + size :])
        else:
            log.error("cluster: a rooms channel item of unknown kind %r: dropped", item.kind)

    def _change(self, feed: RoomFeed, item: _Item) -> None:
        folded = fold(item.room)
        have = feed.version(folded)
        if item.version > have + 1 or (not item.facts and item.version > have):
            # A change was missed, or one no event tells (a deleted account's invite gone):
            # the record as it is.
            if item.facts:
                log.warning("cluster: room changes were missed: the room is read again")
            key = self._state.room_key(folded)
            opened = self._state.open_room(key, self._link.client.get(key))
            if opened is not None:
                feed.replace(folded, opened[1], opened[0])
        events = [
            Event(item.room, f.event, f.user, f.ts, f.by, f.topic, f.also, f.invite_only)
            for f in item.facts
        ]
        feed.changed(folded, item.version, events)
        self._saw({folded: item.version})

    def _post(self, feed: RoomFeed, item: _Item, frames: bytes) -> None:
        mine = item.origin == self.node_id
        verdict = feed.posted(item.sender, item.room, item.last, frames, item.skip if mine else 0)
        if not mine:
            return
        with self._lock:
            posted = self._posted.pop(item.first, None)
        if posted is None:
            return
        if verdict is None:
            feed.kept(posted.msgs)  # taken: stored, whatever its sender was told
        _answer(posted.done, verdict)

    def _saw(self, versions: dict[str, int]) -> None:
        due: list[RoomAnswer] = []
        with self._lock:
            for folded, version in versions.items():
                if version > self._seen.get(folded, 0):
                    self._seen[folded] = version
                waiting = self._waiting.get(folded)
                if waiting:
                    seen = self._seen[folded]
                    due += [done for v, done in waiting if v <= seen]
                    left = [(v, done) for v, done in waiting if v > seen]
                    if left:
                        self._waiting[folded] = left
                    else:
                        del self._waiting[folded]
        for done in due:
            _answer(done, None)

    def _forget_old(self) -> None:
        """Messages of this node's that never came back (a broken subscription): their
        senders were answered by the deadline; forgotten after a minute."""
        now = time.monotonic()
        if now < self._next_forget:
            return
        self._next_forget = now + 1.0
        cutoff = now - _POSTED_FOR
        with self._lock:
            old = [first for first, p in self._posted.items() if p.at < cutoff]
            for first in old:
                del self._posted[first]


def _trouble(request: Request) -> RemoteProtocolError:
    return RemoteProtocolError(Code.RATE_LIMITED, Trouble.CLUSTER, getattr(request, "id", None))


def _answer(done: Any, result: Any) -> None:
    try:
        done(result)
    except Exception:
        log.exception("cluster: answering a room request failed")
