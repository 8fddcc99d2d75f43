"""This process as a node of the cluster: presence, heartbeat, and what other nodes send.

It joins the cluster (checks the key and Redis' persistence, registers its
heartbeat), tells the others when one of its users comes or goes (`local`,
called by the hub under its lock: the change is handed to the relay's
publisher, which keeps it in order with the messages), keeps the hub's
picture of the other nodes up to date, delivers what other nodes send to
this node's sessions, and reaps nodes whose heartbeat stopped.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
import redis

from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.relay import GONE, PRESENCE, Relay, node_users
from chat.server.cluster.url import ClusterError
from chat.server.core import native

if TYPE_CHECKING:
    from chat.server.core.hub import Hub
    from chat.server.net.inbox import LoopInbox

log = logging.getLogger("chat.server.cluster")

NODES = "chat:nodes"
CHECK = "chat:check"
BEAT_EVERY = 1.0  # seconds between heartbeats (and checks for dead nodes)
EXPIRES = 5  # seconds after its last heartbeat a node counts as dead

_UP = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""
_DOWN = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""
_BEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(ARGV[2]), ARGV[1])
return tonumber(now[1])
"""
# One winner: only the node whose ZREM removes the dead one announces it gone.
_REAP = """
local now = redis.call('TIME')
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]))
local reaped = {}
for _, node in ipairs(dead) do
  if node ~= ARGV[1] and redis.call('ZREM', KEYS[1], node) == 1 then
    redis.call('DEL', 'chat:node:' .. node .. ':users')
    redis.call('PUBLISH', KEYS[2], node)
    table.insert(reaped, node)
  end
end
return reaped
"""
_decode_name = msgspec.json.Decoder(str).decode
_encode = msgspec.json.Encoder().encode


class Outbound:
    """What this node tells the others: its users coming and going, and messages for their
    users. Made before the hub (which calls `local` under its lock) and the dispatcher
    (which calls `send`); both only hand over to the relay's publisher thread."""

    def __init__(self, link: Link, box: Box) -> None:
        self.id = secrets.token_hex(8)
        self._box = box
        self.relay = Relay(link, box, self.id)
        self.users_key = node_users(self.id)
        self._up = link.client.register_script(_UP)
        self._down = link.client.register_script(_DOWN)

    def local(self, name: str, up: bool) -> None:
        blind = self._box.blind("user", name)
        event = self.relay.seal_presence("up" if up else "down", name)
        if up:
            sealed = self._box.seal(self.users_key.encode(), _encode(name))
            self.relay.script(self._up, [self.users_key, PRESENCE], [blind, sealed, event])
        else:
            self.relay.script(self._down, [self.users_key, PRESENCE], [blind, event])

    def send(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[int], None] | None,
    ) -> None:
        self.relay.send(node, sender, names, frames, then)


class ClusterNode:
    """This node's side of the cluster (see the module's docstring)."""

    def __init__(
        self,
        link: Link,
        box: Box,
        accounts: RedisAccounts,
        outbound: Outbound,
        hub: Hub,
        table: native.OutTable,
        inbox: LoopInbox,
    ) -> None:
        self.id = outbound.id
        self._link = link
        self._box = box
        self._accounts = accounts
        self._outbound = outbound
        self.relay = outbound.relay
        self._hub = hub
        self._table = table
        self._inbox = inbox
        client = link.client
        self._beat = client.register_script(_BEAT)
        self._reap = client.register_script(_REAP)
        self._stopping = threading.Event()
        self._tick: native.Tick | None = None  # the subscriber thread's (made there)
        self._users_key = outbound.users_key

    # ---- joining -------------------------------------------------------------------------
    def join(self) -> None:
        """Check the key and Redis, register, load the others; ClusterError if impossible."""
        client = self._link.client
        try:
            mine = self._box.check_value()
            client.set(CHECK, mine, nx=True)
            if bytes(client.get(CHECK) or b"") != mine:
                raise ClusterError(
                    f"cluster {self._link.shown}: another key file made this cluster "
                    "(chat:check differs): every node needs the same key"
                )
            self._warn_without_persistence()
            self._beat(keys=[NODES], args=[self.id, EXPIRES])
            self._accounts.reload()
            snapshot = self._snapshot()
        except redis.RedisError as exc:
            raise ClusterError(f"cluster {self._link.shown}: {_one_line(exc)}") from None
        self._hub.remote_reset(snapshot, None)
        self.relay.start(self)
        threading.Thread(target=self._heartbeat_loop, name="cluster-beat", daemon=True).start()
        log.info(
            "joined cluster %s as node %s: %d other nodes, %d users there, %d accounts",
            self._link.shown,
            self.id,
            len(snapshot),
            len({n for names in snapshot.values() for n in names}),
            len(self._accounts),
        )

    def stop(self) -> None:
        self._stopping.set()
        self.relay.stop()
        try:  # leave at once rather than after the heartbeat expires
            self._link.client.zrem(NODES, self.id)
            self._link.client.delete(self._users_key)
            self._link.client.publish(GONE, self.id)
        except redis.RedisError:
            pass

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

    def _snapshot(self) -> dict[str, set[str]]:
        """node -> its users, for every other node with a heartbeat."""
        client = self._link.client
        out: dict[str, set[str]] = {}
        for raw in client.zrange(NODES, 0, -1):
            node = raw.decode()
            if node == self.id:
                continue
            names = set()
            key = node_users(node)
            for _blind, sealed in client.hgetall(key).items():
                plain = self._box.open(key.encode(), bytes(sealed))
                if plain is not None:
                    names.add(_decode_name(plain))
            out[node] = names
        return out

    # ---- what other nodes say (the relay's subscriber thread) -----------------------
    def deliver(self, sender: str, names: list[str] | None, frames: bytes) -> None:
        targets = self._hub.local_targets(sender, names)
        if targets.count:
            tick = self._own_tick()
            self._table.fanout(tick, frames, targets.handles, targets.count, targets.exclude)

    def presence(self, kind: str, node: str, name: str) -> None:
        self._hub.remote_change(node, name, kind == "up", self._own_tick())

    def end_batch(self) -> None:
        self._flush()

    def gone(self, node: str) -> None:
        if node == self.id:  # taken for dead (a long pause): say who is here again
            log.warning("cluster: this node was taken for dead: announcing its users again")
            self.resync()
            return
        log.info("cluster: node %s is gone: its users leave", node)
        self._hub.node_gone(node, self._own_tick())
        self._flush()

    def learned(self, blind: str) -> None:
        self._accounts.learned(blind)

    def resync(self) -> None:
        """Redis is back: what changed meanwhile, and this node's users again."""
        self._accounts.reload()
        self._beat(keys=[NODES], args=[self.id, EXPIRES])
        self._hub.remote_reset(self._snapshot(), self._own_tick())
        self._flush()
        for name in self._hub.local_names():
            self._outbound.local(name, True)
        log.info("cluster: resynchronised with %s", self._link.shown)

    def _own_tick(self) -> native.Tick:
        if self._tick is None:
            self._tick = self._table.tick()
        return self._tick

    def _flush(self) -> None:
        results = self._own_tick().flush()
        if results:
            self._inbox.flushed(results)

    # ---- heartbeat and reaping ----------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(BEAT_EVERY):
            try:
                self._beat(keys=[NODES], args=[self.id, EXPIRES])
                self._reap(keys=[NODES, GONE], args=[self.id])
            except redis.RedisError as exc:
                self._link.failed(exc)
            else:
                self._link.works()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
