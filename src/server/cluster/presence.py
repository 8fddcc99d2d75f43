"""The presence seam over Redis: who is online on the other nodes, and announcing ours.

Each node keeps the picture of the others in memory (name -> nodes), so the
route never waits for Redis. It is fed by the control channels (presence
changes, reaped nodes, new accounts) on a pub/sub connection of its own, and
kept true by heartbeats: every node refreshes its entry in `chat:{g}:nodes`
each second; one that stops for five seconds is reaped by whichever node
removes it first (ZREM's answer makes one winner), which deletes its user
hash and announces it gone, so every other node drops its users within
about six seconds (the contract allows ten).

Two threads, started by `start` and joined by `stop`: the *control*
subscriber, and the *presence* thread, which sends this node's announcements
(a user's first session here, its last one leaving: HSET or HDEL of the
node's user hash and a PUBLISH on the presence channel, in the order the hub
decided them) and the heartbeat. The hash is in the node's slot and the
channel in the global one, so in a Redis Cluster they are two commands, not
one script: a node reading the picture subscribes first and reads the hashes
after, so either order of the two comes to the same picture. When Redis comes
back after an outage, or the global slot moved to another node of a Redis
Cluster (the subscriptions end with it: cluster/bus.py), the subscriber
resynchronises: this node's users announced again, the others' read anew
(`elsewhere_reset`). The operators' channel is a log (bus.py): what was said on
it while the subscription moved is read again, not lost.

Every script names its keys in KEYS (cluster/keys.py); none spans two hash
tags, so all of it runs on a Redis Cluster too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import msgspec
import redis

from chat.server.cluster import bus, keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.url import ClusterError
from chat.server.core.presence import PresenceListener

log = logging.getLogger("chat.server.cluster")

BEAT_EVERY = 1.0  # seconds between heartbeats (and checks for dead nodes)
EXPIRES = 5  # seconds after its last heartbeat a node counts as dead
_RETRY = 0.5
_JOIN = 5.0

_BEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(ARGV[2]), ARGV[1])
return tonumber(now[1])
"""
_encode = msgspec.json.Encoder().encode
_decode_name = msgspec.json.Decoder(str).decode
_decode_event = msgspec.json.Decoder(tuple[str, str, str]).decode


class RedisPresence:
    def __init__(
        self,
        link: Link,
        box: Box,
        node_id: str,
        control: dict[str, Callable[[bytes], None]] | None = None,
        on_resync: list[Callable[[], None]] | None = None,
    ) -> None:
        """`control`: more channels the control subscriber hands over (channel -> handler of
        the raw payload: the accounts channel); `on_resync`: told when Redis is back."""
        self._link = link
        self._box = box
        self.id = node_id
        self._control = dict(control or {})
        self._on_resync = list(on_resync or [])
        self._users_key = keys.node_users(node_id)
        self._lock = threading.Lock()  # the picture below
        self._where: dict[str, dict[str, None]] = {}  # name -> nodes (arrival order)
        self._names: dict[str, set[str]] = {}  # node -> names
        self._local: set[str] = set()  # this node's users, to announce again after an outage
        #: Waited on by two threads (the subscriber's retries too): every notify is a
        #: notify_all, or one could wake the wrong thread and leave the other asleep.
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[tuple[bool, str]] = deque()  # (up, name) to announce, in order
        self._stopping = False
        self._threads: list[threading.Thread] = []
        #: The subscribing thread's, woken by `stop` (its poll would wait out its second).
        self._subscriber: bus.Subscriber | None = None
        self._listener: PresenceListener | None = None
        self._beat = link.script(_BEAT)
        logged = [keys.CONTROL] if keys.CONTROL in self._control else []
        self._follower = bus.Follower(link, [bus.Log(link, c, bus.CONTROL_KEEPS) for c in logged])

    # ---- lifetime ---------------------------------------------------------------------------
    def start(self, listener: PresenceListener) -> None:
        """Check the key, register this node, read who is where; ClusterError if impossible."""
        self._listener = listener
        client = self._link.client
        try:
            mine = self._box.check_value()
            client.set(keys.CHECK, mine, nx=True)
            if bytes(client.get(keys.CHECK) or b"") != mine:
                raise ClusterError(
                    f"cluster {self._link.shown}: another key file made this cluster "
                    "(its key check differs): every node needs the same key"
                )
            self._warn_without_persistence()
            # Subscribed before anything is read, so nothing said meanwhile is missed.
            self._follower.start()
            subscriber = bus.Subscriber(self._link, [keys.PRESENCE, keys.GONE, *self._control])
            self._subscriber = subscriber
            subscriber.open()
            try:
                for fn in self._on_resync:
                    fn()
                self._beat(keys=[keys.NODES], args=[self.id, EXPIRES])
                snapshot = self._snapshot()
            except BaseException:
                subscriber.close()
                raise
        except redis.RedisError as exc:
            raise ClusterError(f"cluster {self._link.shown}: {_one_line(exc)}") from None
        self._reset(snapshot)
        self._threads = [
            threading.Thread(target=self._control_loop, args=(subscriber,), name="cluster-control"),
            threading.Thread(target=self._presence_loop, name="cluster-presence"),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "joined cluster %s as node %s: %d other nodes, %d users there",
            self._link.shown,
            self.id,
            len(snapshot),
            len({n for names in snapshot.values() for n in names}),
        )

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._subscriber is not None:
            self._subscriber.wake()
        for thread in self._threads:
            thread.join(_JOIN)
            if thread.is_alive():
                log.error("cluster: thread %s did not stop in time", thread.name)
        try:  # leave at once rather than after the heartbeat expires
            client = self._link.client
            client.zrem(keys.NODES, self.id)
            client.delete(self._users_key, *keys.log_keys(keys.node_inbox(self.id)))
            self._link.publish(client, keys.GONE, self.id)
        except redis.RedisError:
            pass

    # ---- the core's calls (hub lock held: queue only) ------------------------------------------
    def arrived(self, name: str) -> None:
        self._announce(True, name)

    def departed(self, name: str) -> None:
        self._announce(False, name)

    def nodes_of(self, name: str) -> tuple[str, ...]:
        with self._lock:
            nodes = self._where.get(name)
            return tuple(nodes) if nodes else ()

    def nodes(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(node for node, names in self._names.items() if names)

    def everyone(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return {name: tuple(nodes) for name, nodes in self._where.items()}

    def _announce(self, up: bool, name: str) -> None:
        with self._cond:
            if up:
                self._local.add(name)
            else:
                self._local.discard(name)
            self._jobs.append((up, name))
            self._cond.notify_all()

    # ---- presence thread: announcements and heartbeats ------------------------------------------
    def _presence_loop(self) -> None:
        next_beat = time.monotonic() + BEAT_EVERY
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    left = next_beat - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return
                jobs = list(self._jobs)
                self._jobs.clear()
            try:
                if jobs:
                    self._send(jobs)
                    jobs = []
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + BEAT_EVERY
                    if not self._link.up:  # a node of a Redis Cluster failed: is it back?
                        self._link.check()
                    else:  # a slot map a redirection or a failure asked to read again
                        self._link.refresh()
                    self._beat(keys=[keys.NODES], args=[self.id, EXPIRES])
                    self._reap()
                self._link.works()
            except redis.RedisError as exc:
                self._link.failed(exc)
            except Exception:
                log.exception("cluster: the presence thread met an unexpected error; it goes on")
            if jobs:  # not sent: said again, in order, once Redis answers (twice is harmless)
                with self._cond:
                    self._jobs.extendleft(reversed(jobs))
                    if not self._stopping:
                        self._cond.wait(_RETRY)

    def _send(self, jobs: list[tuple[bool, str]]) -> None:
        """HSET or HDEL of this node's hash and the change on the presence channel, in order
        (two slots in a Redis Cluster: a pipeline, not a script)."""
        pipe = self._link.client.pipeline(transaction=False)
        for up, name in jobs:
            blind = self._box.blind("user", name)
            event = self._box.seal(
                keys.PRESENCE.encode(), _encode(("up" if up else "down", self.id, name))
            )
            if up:
                sealed = self._box.seal(self._users_key.encode(), _encode(name))
                pipe.hset(self._users_key, blind, sealed)
            else:
                pipe.hdel(self._users_key, blind)
            self._link.publish(pipe, keys.PRESENCE, event)
        pipe.execute()

    def _reap(self) -> None:
        """Remove nodes whose heartbeat stopped; the one whose ZREM wins announces it."""
        client = self._link.client
        now = int(client.time()[0])
        for raw in client.zrangebyscore(keys.NODES, "-inf", now):
            node = raw.decode()
            if node != self.id and client.zrem(keys.NODES, node) == 1:
                client.delete(keys.node_users(node), *keys.log_keys(keys.node_inbox(node)))
                self._link.publish(client, keys.GONE, node)

    # ---- control thread: what the other nodes say ----------------------------------------------
    def _control_loop(self, subscriber: bus.Subscriber) -> None:
        behind = False  # the operators' log is read again, and the picture, once Redis answers
        try:
            while not self._stopping:
                try:
                    if behind:
                        behind = False
                        self._resync()
                        self._heard(self._follower.again(keys.CONTROL), keys.CONTROL)
                        self._follower.broken.clear()
                    events = subscriber.poll(1.0)
                    if not events:
                        continue
                    try:
                        for event in events:
                            if isinstance(event, bus.Again):  # subscribed again: what was missed
                                behind = True
                            elif event.channel in self._follower.channels():
                                taken = self._follower.take(event.channel, event.data)
                                self._heard(taken, event.channel)
                            else:
                                self._handle(event.channel, event.data)
                    finally:
                        self._settled()
                except redis.RedisError as exc:
                    self._link.failed(exc)
                    behind = True
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(_RETRY)
                except Exception:
                    log.exception("cluster: the control subscriber failed; it goes on")
                    behind = True
        finally:
            subscriber.close()

    def _heard(self, payloads: list[bytes], channel: str) -> None:
        handler = self._control.get(channel)
        for payload in payloads:
            if handler is not None:
                handler(payload)

    def _handle(self, channel: str, data: bytes) -> None:
        handler = self._control.get(channel)
        if handler is not None:
            handler(data)
        elif channel == keys.GONE:
            self._gone(data.decode())
        else:
            plain = self._box.open(keys.PRESENCE.encode(), data)
            if plain is None:
                log.error("cluster: a presence change does not open (another key?): dropped")
                return
            try:
                kind, origin, name = _decode_event(plain)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("cluster: a presence change does not decode: dropped")
                return
            if origin != self.id:
                self._change(origin, name, kind == "up")

    def _change(self, node: str, name: str, up: bool) -> None:
        with self._lock:
            nodes = self._where.setdefault(name, {})
            before = bool(nodes)
            if up:
                nodes[node] = None
                self._names.setdefault(node, set()).add(name)
            else:
                nodes.pop(node, None)
                self._names.get(node, set()).discard(name)
            after = bool(nodes)
            if not nodes:
                del self._where[name]
        if before != after and self._listener is not None:
            self._listener.elsewhere(name, after)

    def _gone(self, node: str) -> None:
        if node == self.id:  # taken for dead (a long pause): say who is here again
            log.warning("cluster: this node was taken for dead: announcing its users again")
            self._resync()
            return
        log.info("cluster: node %s is gone: its users leave", node)
        with self._lock:
            names = self._names.pop(node, set())
        for name in sorted(names):
            self._change(node, name, False)

    def _settled(self) -> None:
        if self._listener is not None:
            self._listener.settled()

    def _resync(self) -> None:
        """Redis is back: this node announced again, the others read anew."""
        for fn in self._on_resync:
            fn()
        with self._cond:
            self._jobs.extendleft((True, n) for n in sorted(self._local, reverse=True))
            self._cond.notify_all()
        self._beat(keys=[keys.NODES], args=[self.id, EXPIRES])
        self._reset(self._snapshot())
        self._settled()
        log.info("cluster: resynchronised with %s", self._link.shown)

    def _reset(self, snapshot: dict[str, set[str]]) -> None:
        with self._lock:
            self._names = {node: set(names) for node, names in snapshot.items()}
            self._where = {}
            for node, names in snapshot.items():
                for name in names:
                    self._where.setdefault(name, {})[node] = None
            everyone = set(self._where)
        if self._listener is not None:
            self._listener.elsewhere_reset(everyone)

    def _snapshot(self) -> dict[str, set[str]]:
        """node -> its users, for every other node with a heartbeat."""
        client = self._link.client
        out: dict[str, set[str]] = {}
        for raw in client.zrange(keys.NODES, 0, -1):
            node = raw.decode()
            if node == self.id:
                continue
            key = keys.node_users(node)
            names = set()
            for _blind, sealed in client.hgetall(key).items():
                plain = self._box.open(key.encode(), bytes(sealed))
                if plain is not None:
                    names.add(_decode_name(plain))
            out[node] = names
        return out

    def _warn_without_persistence(self) -> None:
        try:
            conf = self._link.client.config_get("append*")
        except redis.RedisError:
            log.warning(
                "cluster: cannot read redis' persistence settings (CONFIG not allowed?): "
                "registrations and queued messages are durable only with appendonly yes "
                "and appendfsync always (docs/cluster.md)"
            )
            return
        if conf.get("appendonly") != "yes" or conf.get("appendfsync") != "always":
            log.warning(
                "cluster: redis runs with appendonly=%s appendfsync=%s: a redis crash can "
                "lose registrations and queued messages; set appendonly yes and "
                "appendfsync always (docs/cluster.md)",
                conf.get("appendonly"),
                conf.get("appendfsync"),
            )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
