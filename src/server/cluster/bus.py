"""Pub/sub for a node: subscriptions that follow their slot, and logs that lose nothing.

Redis pub/sub is at-most-once: a subscriber that is not subscribed when a
message is published never gets it. In a Redis Cluster that happens without
any failure: a slot that moves (`redis-cli --cluster reshard`) ends the shard
subscriptions of its channels (Redis pushes `sunsubscribe`), and what is
published to the new owner before the subscriber subscribes there reaches
nobody; so does what a script runs on the new owner while the slot is still
migrating (ASK). Two parts here make that loss impossible, or visible:

- `Subscriber` (one per thread that listens): every channel subscribed on the
  node that serves its slot now (classic SUBSCRIBE on one Redis, SSUBSCRIBE per
  slot in a cluster), read together (select over the nodes' sockets). A channel
  Redis unsubscribes, or whose node fails, is subscribed again where its slot is
  now (at once, or every half second while its node is away), and the reader is
  told (`Again`): what was published meanwhile is for it to catch up.
- `Log` (Centrifugo's way: a channel paired with a stream and offsets): every
  message of the channel is numbered (a counter in a hash next to it, one slot)
  and kept in a capped stream by the same script that publishes it, so the
  numbers, the stream and the channel agree. `Follower` reads: a number seen
  twice is dropped (a catch-up and the live message), a number skipped is read
  from the stream before what follows it, and after `Again` the stream is read
  from the last number taken. So a log's reader gets each message once, in
  order, whatever the subscription missed, as long as the stream still has it
  (its length bounds that; beyond, the loss is logged and the reader told).

A log can also tell its publisher whether a message nobody took live was taken
later by a catch-up (`settle`): the publish script notes such a message, a
catch-up marks it taken, and the publisher's last word gives it up (a catch-up
then skips it). The publisher asks with a mark of its own, kept beside the noted
message: a failover that lost the message gives its number to the next one, which the
number alone would answer for. A node's inbox (one reader: its node) uses that, so a `sent`
says `delivered` only for what its node took, and `queued` for what it never
will take, during a slot move as at any other time (cluster/broker.py).

Every script names every key it touches in KEYS, and a log's keys and channel
share one hash tag (cluster/keys.py `log_keys`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException

from chat.server.cluster import keys
from chat.server.cluster.link import TIMEOUT, Link

log = logging.getLogger("chat.server.cluster")
_T = TypeVar("_T")

#: Seconds between attempts to subscribe again a channel whose node is away.
RETRY = 0.5
#: Seconds between checks that each subscription is where the slot map says its slot is.
FOLLOW = 1.0
#: Operators' commands the control log keeps (cluster/moderation.py, presence.py).
CONTROL_KEEPS = 100
_CATCH_UP = 500  # stream entries read per call while catching up

# The log's epoch: made (from Redis' clock) when its state is, so a log that starts anew
# (a Redis, or the master of its slot, that lost its data) is told from the old one whose
# numbers its own repeat. Lua, shared by the scripts below: `e` holds it.
_EPOCH = """
local e = redis.call('HGET', KEYS[2], 'e')
if not e then
  local t = redis.call('TIME')
  e = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', KEYS[2], 'e', e)
end
"""
# KEYS: the log's stream, its state hash. ARGV: the payload, the channel, the stream's
# length (approximate), "1" to note a message no subscriber took (`settle`), the
# publisher's mark for this message (`settle` asks with it). The number and the epoch
# lead the published message ("<n>.<epoch> <payload>"); the stream keeps the payload
# under the number, and the mark beside a noted message's.
_PUBLISH = (
    """
local n = redis.call('HINCRBY', KEYS[2], 's', 1)
"""
    + _EPOCH
    + """
local got = redis.call('{pub}', ARGV[2], n .. '.' .. e .. ' ' .. ARGV[1])
if got == 0 and ARGV[4] == '1' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], n .. '-0', 'd', ARGV[1], 'm', ARGV[5])
  redis.call('HSET', KEYS[2], 'p' .. n, 1)
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], n .. '-0', 'd', ARGV[1])
end
return {n, got}
"""
)
# KEYS: stream, state. ARGV: the last number taken, how many entries at most. Returns the
# newest number, the oldest the stream still has, the last number looked at, the epoch,
# then number and payload of each entry after the one taken (those given up skipped;
# those noted untaken now marked taken).
_CATCH_UP_SCRIPT = (
    """
local now = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
"""
    + _EPOCH
    + """
local low = now + 1
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then low = tonumber(string.match(first[1][1], '^(%d+)')) end
local after = tonumber(ARGV[1])
local out = {now, low, after, e}
if after >= now then return out end
local rows = redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+', 'COUNT', ARGV[2])
for _, row in ipairs(rows) do
  local n = tonumber(string.match(row[1], '^(%d+)'))
  out[3] = n
  if redis.call('HEXISTS', KEYS[2], 'v' .. n) == 0 then
    redis.call('HDEL', KEYS[2], 'p' .. n)
    out[#out + 1] = n
    out[#out + 1] = row[2][2]
  end
end
return out
"""
)
# KEYS: stream, state. ARGV: a number noted untaken, "1" for the publisher's last word,
# the publisher's mark for it. 1: a catch-up took it; 0: given up, or lost (the log is
# gone, or a failover lost it: the number is not there yet, or it is another message's,
# whose mark is not this one); -1: not yet. Asked twice, the same answer.
_SETTLE = """
local n = ARGV[1]
local now = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
if now < tonumber(n) then return 0 end
if redis.call('HEXISTS', KEYS[2], 'v' .. n) == 1 then return 0 end
local row = redis.call('XRANGE', KEYS[1], n .. '-0', n .. '-0')
if #row > 0 then
  local f = row[1][2]
  if f[3] ~= 'm' or f[4] ~= ARGV[3] then return 0 end
end
if redis.call('HEXISTS', KEYS[2], 'p' .. n) == 0 then return 1 end
if ARGV[2] ~= '1' then return -1 end
redis.call('HDEL', KEYS[2], 'p' .. n)
redis.call('HSET', KEYS[2], 'v' .. n, 1)
return 0
"""
# KEYS: stream, state. Makes both exist (a slot that migrates answers TRYAGAIN to a script
# naming a key that is nowhere yet) and returns the newest number and the epoch.
_ENSURE = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], '0-1', 'd', '')
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
end
redis.call('HSETNX', KEYS[2], 's', 0)
"""
    + _EPOCH
    + """
return {tonumber(redis.call('HGET', KEYS[2], 's')), e}
"""
)


class Log:
    """A channel whose messages are numbered and kept (for `length` of them) beside it."""

    def __init__(self, link: Link, channel: str, length: int, settles: bool = False) -> None:
        self.channel = channel
        self.stream, self.state = keys.log_keys(channel)
        self.length = length
        self.settles = settles
        #: The hash slot of the channel and its keys (a Redis Cluster routes by it).
        self.slot = _slot(link, channel) if link.cluster else 0
        self._link = link
        self._publish = link.script(_PUBLISH.replace("{pub}", link.pub))
        self._catch_up = link.script(_CATCH_UP_SCRIPT)
        self._settle = link.script(_SETTLE)
        self._ensure = link.script(_ENSURE)
        self._mark = secrets.token_hex(4)  # this process's, for its marks (`mark`)
        self._marks = 0

    def mark(self) -> str:
        """A mark for the next message published here that its `settle` asks with: the
        number alone cannot tell a message from the one a failover gave its number to."""
        self._marks += 1
        return f"{self._mark}{self._marks:x}"

    def publish(self, target: Any, payload: bytes, mark: str = "") -> Any:
        """Number, keep and publish `payload` (through a client: [number, subscribers that
        took it]; through a pipeline: queued). `mark`: what `settle` asks with, kept only
        beside a message noted untaken."""
        track = "1" if self.settles else "0"
        return self._publish(
            keys=[self.stream, self.state],
            args=[payload, self.channel, self.length, track, mark],
            client=target,
        )

    def publish_in(self, pipe: Any, payload: bytes) -> None:
        """The same inside a MULTI (a room's change: cluster/rooms.py): EVAL, the script's
        text, so that no EXEC can find it missing on a node (NOSCRIPT would leave the
        transaction's other writes without their message)."""
        pipe.execute_command(
            "EVAL",
            self._publish.script,
            2,
            self.stream,
            self.state,
            payload,
            self.channel,
            self.length,
            "1" if self.settles else "0",
            "",
        )

    def settle(self, target: Any, number: int, mark: str, final: bool) -> Any:
        """Whether message `number` (published with `mark`), which no subscriber took when
        published, was taken by a catch-up since (1), is given up now (0: `final`, and no
        catch-up will take it) or lost, or neither yet (-1)."""
        return self._settle(
            keys=[self.stream, self.state],
            args=[number, "1" if final else "0", mark],
            client=target,
        )

    def ensure(self, target: Any) -> Any:
        """[newest number, epoch], the log made to exist."""
        return self._ensure(keys=[self.stream, self.state], client=target)

    def read_after(
        self, client: Any, after: int
    ) -> tuple[int, int, int, bytes, list[tuple[int, bytes]]]:
        """(newest number, oldest kept, last looked at, epoch, [(number, payload)] after
        `after`), a few hundred entries at most per call."""
        out = self._catch_up(keys=[self.stream, self.state], args=[after, _CATCH_UP], client=client)
        now, low, seen, epoch = int(out[0]), int(out[1]), int(out[2]), bytes(out[3])
        rows = [(int(out[i]), bytes(out[i + 1])) for i in range(4, len(out), 2)]
        return now, low, seen, epoch, rows


class Follower:
    """The reading side of some logs, on one thread: each message once, in order.

    `start` (once subscribed) takes each log's newest number as where reading starts.
    `take` a message as it came; `again` after the subscription was broken. Both return
    the payloads to handle, in order. A loss the stream cannot make good (trimmed past
    it, or the log gone with a Redis that lost its data) is logged, and the log's channel
    is in `broken` until the reader clears it (it reads its state anew then).
    """

    def __init__(self, link: Link, logs: Iterable[Log]) -> None:
        self._link = link
        self._logs = {one.channel: one for one in logs}
        self._last: dict[str, int] = {}
        self._epoch: dict[str, bytes] = {}
        self.broken: set[str] = set()

    def channels(self) -> list[str]:
        return list(self._logs)

    def start(self) -> None:
        """Each log made to exist, and read from its newest number on (RedisError when Redis
        does not answer)."""
        logs = list(self._logs.values())
        for _node, group in by_node(self._link, logs, lambda one: one):
            pipe = self._link.client.pipeline(transaction=False)
            for one in group:
                one.ensure(pipe)
            for one, (now, epoch) in zip(group, self._execute(pipe, group), strict=True):
                self._last[one.channel] = int(now)
                self._epoch[one.channel] = bytes(epoch)

    def _execute(self, pipe: Any, group: list[Log]) -> list[Any]:
        try:
            return list(pipe.execute())
        except redis.exceptions.NoScriptError:
            self._link.load_scripts()
            return [one.ensure(self._link.client) for one in group]

    def take(self, channel: str, data: bytes) -> list[bytes]:
        head, _, payload = data.partition(b" ")
        number_text, _, epoch = head.partition(b".")
        try:
            number = int(number_text)
        except ValueError:
            log.error("cluster: a message on %s has no number: dropped", channel)
            return []
        last = self._last.get(channel)
        if last is None:
            return [payload]  # not a log of this reader's
        if epoch != self._epoch.get(channel):
            return self.again(channel)  # the log started anew: read from its stream
        if number <= last:
            return []  # had it (from a catch-up)
        if number == last + 1:
            self._last[channel] = number
            return [payload]
        return self.again(channel)  # some were skipped: the stream has them, this one too

    def again(self, channel: str) -> list[bytes]:
        """Everything after the last number taken, from the stream (RedisError when Redis
        does not answer: the reader tries again later)."""
        one = self._logs.get(channel)
        if one is None:
            return []
        last = self._last[channel]
        out: list[bytes] = []
        while True:
            now, low, seen, epoch, rows = one.read_after(self._link.client, last)
            if epoch != self._epoch.get(channel):
                # Redis (the master of its slot) lost the log and began a new one: what the
                # old one held past `last` is gone; the new one is read from its start.
                log.error(
                    "cluster: the log of %s started anew after number %d (redis lost its "
                    "data?): what was not read of it is lost",
                    channel,
                    last,
                )
                self.broken.add(channel)
                self._epoch[channel] = epoch
                last = self._last[channel] = 0
                continue
            if now < last:
                # The same epoch, fewer numbers: a failover whose replica had not yet
                # received the newest writes (Redis replicates asynchronously), or a
                # hand-edited state. What was taken stays taken; the numbers after `now`
                # are given again to new messages, which must be read, not taken for
                # those (tests/cluster/test_redis_cluster.py).
                log.error(
                    "cluster: the log of %s went back from %d to %d (a failover that lost "
                    "its newest writes?): reading goes on from %d",
                    channel,
                    last,
                    now,
                    now,
                )
                self.broken.add(channel)
                self._last[channel] = now
                return out
            if low > last + 1 and now > last:
                log.error(
                    "cluster: %d messages of %s were lost before they could be read again "
                    "(its stream keeps about %d)",
                    min(low - 1, now) - last,
                    channel,
                    one.length,
                )
                self.broken.add(channel)
            out += [payload for _, payload in rows]
            if seen >= now or seen == last:  # all read (or nothing left to read: lost)
                self._last[channel] = now
                return out
            # Taken only when all is returned: a Redis that fails before (RedisError) leaves
            # the reader where it was, to read it all again, never past what it dropped.
            last = seen

    def last(self, channel: str) -> int:
        return self._last.get(channel, 0)


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Again:
    """These channels were subscribed again (their slot moved, their node came back): what
    was published to them meanwhile is to be caught up."""

    channels: tuple[str, ...]


Event = Message | Again


class Subscriber:
    """The subscriptions of one thread, each on the node that serves its channel now."""

    def __init__(self, link: Link, channels: Sequence[str]) -> None:
        self._link = link
        self._channels = list(dict.fromkeys(channels))
        self._subs: dict[str, Any] = {}  # node name ("" for one Redis) -> its PubSub
        self._owners: dict[str, Any] = {}  # -> the client it came from (freed, it closes it)
        self._where: dict[str, str] = {}  # channel -> node name
        self._detached: set[str] = set()
        self._retry_at = 0.0
        self._follow_at = 0.0
        self._events: list[Event] = []  # in the order they happened, until `poll` hands them
        # `wake` ends a `poll` at once (its owner is stopping): without it a node's stop
        # waited out each subscriber's poll, about a second apiece, one after the other.
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._fds_lock = threading.Lock()  # `wake` (any thread) against `close` (the owner's)

    # ---- lifetime -----------------------------------------------------------------------
    def open(self) -> None:
        """Subscribe every channel (RedisError, everything closed, if any cannot be)."""
        try:
            self._attach(self._channels, strict=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for pubsub in self._subs.values():
            with contextlib.suppress(Exception):
                pubsub.close()
        self._subs.clear()
        self._owners.clear()
        self._where.clear()
        with self._fds_lock:
            if self._wake_w >= 0:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def wake(self) -> None:
        """End the `poll` under way (or the next one) now; any thread, also after `close`
        (then nothing: the descriptor's number may be another file's by now)."""
        with self._fds_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):  # full: a wake is pending anyway
                    os.write(self._wake_w, b"\0")

    @property
    def attached(self) -> bool:
        """Whether every channel is subscribed now."""
        return not self._detached

    # ---- reading ------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Event]:
        """What came within `timeout` seconds (returns as soon as anything came), in the
        order it came; a channel subscribed again comes as `Again` before its new messages."""
        if self._link.cluster and time.monotonic() >= self._follow_at:
            self._follow_at = time.monotonic() + FOLLOW
            self._follow_map()
        if self._detached and time.monotonic() >= self._retry_at:
            self._reattach()
        self._drain()
        if not self._events:
            if self._detached:
                timeout = min(timeout, max(0.0, self._retry_at - time.monotonic()))
            socks: list[Any] = [
                sock
                for pubsub in self._subs.values()
                if (sock := getattr(pubsub.connection, "_sock", None)) is not None
            ]
            woken = self._wake_r
            try:
                ready, _, _ = select.select([*socks, woken], [], [], timeout)
            except (OSError, ValueError):  # a socket closed under us: reading says why
                ready = socks
            if woken in ready:
                with contextlib.suppress(OSError):
                    os.read(woken, 64)
            if any(r is not woken for r in ready):
                self._drain()
        out, self._events = self._events, []
        return out

    def _drain(self) -> None:
        for name, pubsub in list(self._subs.items()):
            for _ in range(4096):
                try:
                    reply = pubsub.get_message(timeout=0.0)
                except (MovedError, AskError) as exc:
                    self._moved(name, exc)
                    break
                except (redis.RedisError, RedisClusterException, OSError) as exc:
                    self._lost(name, exc)
                    break
                if reply is None:
                    break
                self._reply(name, reply)
                if self._subs.get(name) is not pubsub:
                    break  # it held nothing more: closed

    def _reply(self, name: str, reply: dict[str, Any]) -> str:
        """Note what a reply says; its kind and channel ("" when it has none)."""
        kind = reply["type"]
        channel = _text(reply["channel"]) if reply.get("channel") is not None else ""
        if kind in ("message", "smessage"):
            self._events.append(Message(channel, bytes(reply["data"])))
        elif kind in ("sunsubscribe", "unsubscribe"):
            self._unsubscribed(name, channel)
        return f"{kind} {channel}"

    # ---- subscribing ----------------------------------------------------------------------
    def _attach(self, channels: Iterable[str], strict: bool = False) -> None:
        """Subscribe `channels` where they live now; those that cannot be are detached (or,
        when `strict`, the error is raised)."""
        plan: dict[str, tuple[Any, dict[int, list[str]]]] = {}
        for channel in channels:
            if not self._link.cluster:
                plan.setdefault("", (None, {}))[1].setdefault(0, []).append(channel)
                continue
            try:
                node = self._link.node_of(channel)
            except RedisClusterException as exc:
                if strict:
                    raise redis.ConnectionError(str(exc)) from None
                self._detached.add(channel)
                self._retry_at = time.monotonic() + RETRY
                continue
            slots = plan.setdefault(node.name, (node, {}))[1]
            slots.setdefault(_slot(self._link, channel), []).append(channel)
        for name, (node, slots) in plan.items():
            wanted = [c for chans in slots.values() for c in chans]
            try:
                pubsub = self._subs.get(name)
                if pubsub is None:
                    owner = (
                        self._link.make_client() if node is None else self._link.node_client(node)
                    )
                    self._owners[name] = owner  # freed, it would close the connection
                    pubsub = self._subs[name] = owner.pubsub()
                kind = "ssubscribe" if self._link.cluster else "subscribe"
                for chans in slots.values():  # SSUBSCRIBE takes the channels of one slot
                    getattr(pubsub, kind)(*chans)
                self._confirm(pubsub, name, set(wanted), kind)
                if node is not None and not _is_master(self._link.node_client(node)):
                    self._off_replica(name, wanted, strict)
                    continue
            except (MovedError, AskError) as exc:
                if strict:
                    raise
                self._detached.update(wanted)
                self._moved(name, exc)
                continue
            except (redis.RedisError, RedisClusterException, OSError) as exc:
                if strict:
                    raise
                self._detached.update(wanted)
                self._lost(name, exc)
                continue
            for channel in wanted:
                self._where[channel] = name

    def _confirm(self, pubsub: Any, name: str, wanted: set[str], kind: str) -> None:
        """Read until Redis confirmed every channel of `wanted` (messages of other channels
        read meanwhile keep their place)."""
        deadline = time.monotonic() + 2 * TIMEOUT
        while wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.TimeoutError(f"no answer to {kind.upper()} in time")
            reply = pubsub.get_message(timeout=left)
            if reply is None:
                continue
            if reply["type"] == kind:
                wanted.discard(_text(reply["channel"]))
            else:
                self._reply(name, reply)

    def _reattach(self) -> None:
        channels = sorted(self._detached)
        self._detached.clear()
        self._refresh()
        self._attach(channels)
        back = tuple(c for c in channels if c in self._where)
        if back:
            self._events.append(Again(back))

    def _refresh(self) -> None:
        """Read the cluster's slots again (a move or a failure changed them)."""
        if self._link.cluster:
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                self._link.client.nodes_manager.initialize()

    def _unsubscribed(self, name: str, channel: str) -> None:
        """Redis ended a subscription (its slot moved away from that node): subscribed again
        where the slot is now, and said."""
        if self._where.get(channel) != name:
            return
        del self._where[channel]
        pubsub = self._subs.get(name)
        if pubsub is not None:
            for form in (channel, channel.encode()):
                pubsub.shard_channels.pop(form, None)
                pubsub.channels.pop(form, None)
            if not pubsub.shard_channels and not pubsub.channels:
                self._drop(name)
        self._refresh()
        self._attach([channel])
        if channel in self._where:
            self._events.append(Again((channel,)))

    def _follow_map(self) -> None:
        """Channels subscribed on a node the slot map no longer names for their slot (the
        heartbeat reads it again after a failure: `Link.check`) are subscribed again where
        it does. A master frozen past the node timeout and thawed is its replica's replica:
        the chaos soak saw a node's subscription stay there for good, no `sunsubscribe`
        coming, every message said `missing` (`queued`) although it arrived."""
        stray: dict[str, list[str]] = {}
        for channel, name in self._where.items():
            try:
                serving = self._link.node_of(channel, _slot(self._link, channel)).name
            except RedisClusterException:
                continue
            if serving != name:
                stray.setdefault(name, []).append(channel)
        for name, channels in stray.items():
            for channel in channels:
                del self._where[channel]
            self._detached.update(channels)
            try:
                self._release(name, channels)
            except (redis.RedisError, RedisClusterException, OSError) as exc:
                self._lost(name, exc)
        if stray:
            self._retry_at = time.monotonic()

    def _release(self, name: str, channels: list[str]) -> None:
        """`channels` are no longer wanted on node `name` (none of them in `_where`): its
        connection closed when it holds no other channel, else SUNSUBSCRIBE, whose answer
        (for channels no longer noted there) is ignored."""
        pubsub = self._subs.get(name)
        if pubsub is None:
            return
        if name not in self._where.values():
            self._drop(name)
            return
        for channel in channels:
            for form in (channel, channel.encode()):
                pubsub.shard_channels.pop(form, None)
        pubsub.sunsubscribe(*channels)

    def _off_replica(self, name: str, channels: list[str], strict: bool) -> None:
        """Subscribed on a replica (the slot map was stale: a failover's former master, a
        replica now): undone, and tried again with the map read again. Redis 7.0 takes
        SSUBSCRIBE on a replica and passes its master's messages on to it, but the master's
        SPUBLISH counts only its own subscribers: every message arrived while every
        publisher was told nobody took it (`missing`, `queued`, then a second copy at the
        next login), and nothing ever moved the subscription (no `sunsubscribe` comes)."""
        with contextlib.suppress(redis.RedisError, OSError):
            self._release(name, channels)
        if strict:
            raise redis.ConnectionError(f"{name} is a replica now: the slot map was stale")
        log.info("redis %s node %s is a replica now: subscribing again", self._link.shown, name)
        self._detached.update(channels)
        self._retry_at = time.monotonic() + RETRY

    def _moved(self, name: str, exc: AskError) -> None:
        """A subscription went to a node that no longer serves the slot: the slot's channels
        are subscribed again where it is."""
        with contextlib.suppress(Exception):
            self._link.client.nodes_manager.move_slot(exc)
        for channel, where in list(self._where.items()):
            if where == name and _slot(self._link, channel) == exc.slot_id:
                del self._where[channel]
                self._detached.add(channel)
        self._retry_at = time.monotonic()

    def _lost(self, name: str, exc: BaseException) -> None:
        """A node's connection failed: its channels wait for it (or for their slot's next
        node), tried again every half second."""
        self._link.failed(exc, name or None)
        for channel, where in list(self._where.items()):
            if where == name:
                del self._where[channel]
                self._detached.add(channel)
        self._drop(name)
        self._retry_at = time.monotonic() + RETRY

    def _drop(self, name: str) -> None:
        self._owners.pop(name, None)
        pubsub = self._subs.pop(name, None)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()


def by_node(
    link: Link, items: Sequence[_T], log_of: Callable[[_T], Log]
) -> list[tuple[str, list[_T]]]:
    """Items grouped by the Redis node that serves their log, each group in the order given
    (one group, "", for one Redis): a pipeline per node, so that a node away costs only its
    own."""
    if not link.cluster:
        return [("", list(items))] if items else []
    groups: dict[str, list[_T]] = {}
    for item in items:
        try:
            name = link.node_of(log_of(item).channel, log_of(item).slot).name
        except RedisClusterException:  # a slot no node serves: a group that fails alone
            name = "?"
        groups.setdefault(name, []).append(item)
    return list(groups.items())


def _is_master(client: Any) -> bool:
    """Whether this node of a Redis Cluster is a master, as it says itself (CLUSTER NODES,
    allowed where ROLE and INFO, `@dangerous`, are not)."""
    for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines():
        parts = line.split()
        if len(parts) > 2 and "myself" in parts[2].split(","):
            return "master" in parts[2].split(",")
    return True  # no line for itself: the slot map is trusted, as before


def _slot(link: Link, channel: str) -> int:
    return int(key_slot(channel.encode()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
