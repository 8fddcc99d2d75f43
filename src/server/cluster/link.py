"""The connection to Redis: one URL, clients made from it, and a password that never shows.

One Redis (`redis://[user:password@]host:port/db`, `rediss://...` for TLS) or a
Redis Cluster (`redis+cluster://host:port[,host:port...]`, `rediss+cluster://`):
cluster/url.py checks the URL. Every client has short timeouts: a Redis that
goes away must cost a node its cross-node traffic, never its local clients
(docs/cluster.md, "Failures").

What differs between the two is kept here and in cluster/bus.py:

- pub/sub: classic `PUBLISH`/`SUBSCRIBE` on one Redis; sharded `SPUBLISH`/
  `SSUBSCRIBE` on a Redis Cluster (a classic `PUBLISH` is copied to every node
  of a cluster, redis#2672). `publish` and the scripts of bus.py use `pub`.
- whether Redis answers: one flag for one Redis; for a cluster, the nodes that
  failed (a lost shard costs the keys and channels it holds, not the others):
  `reachable(key)`, `up` (every node answers) and `check()` (each node asked).
- redis-py's cluster errors that are not a `RedisError` (`RedisClusterException`:
  no node reachable, a slot nobody serves) come out of the cluster client as
  `ClusterUnavailable`, a `redis.ConnectionError`: every caller's `except
  redis.RedisError` holds for both kinds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from chat.server.cluster.url import ClusterError, parse, redacted

log = logging.getLogger("chat.server.cluster")

#: Seconds for a connect or a reply. Every call on a path a client waits for has it, and
#: no call is retried by the library (redis-py retries three times by default: a Redis
#: frozen with SIGSTOP held a sender for three timeouts); the node's own loops retry.
#: (A Redis Cluster's redirections, MOVED, ASK and TRYAGAIN during a slot move, are
#: followed by redis-py whatever this says: they are not failures.)
TIMEOUT = 1.0
_ANY = "*"  # a failure whose node is not known: every node counts as failed


class ClusterUnavailable(redis.ConnectionError):
    """A Redis Cluster that cannot serve a command (no node reachable, a slot not served)."""


def _wrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnavailable(str(exc)) from exc

    return call


class _Pipeline(ClusterPipeline):
    execute_command = _wrapped(ClusterPipeline.execute_command)
    execute = _wrapped(ClusterPipeline.execute)
    watch = _wrapped(ClusterPipeline.watch)
    multi = _wrapped(ClusterPipeline.multi)

    def execute_once(self) -> list[Any]:
        """Every command sent once: its reply, or its error (a redirection too), never sent
        again by redis-py (its pipeline sends a command that met a timeout again on its own:
        a publish that had run would then run twice)."""
        try:
            strategy = self._execution_strategy
            return list(
                _wrapped(strategy.send_cluster_commands)(
                    strategy.command_queue, raise_on_error=False, allow_redirections=False
                )
            )
        finally:
            self.reset()


class _Cluster(RedisCluster):
    """redis-py's cluster client whose errors are all `RedisError`s."""

    execute_command = _wrapped(RedisCluster.execute_command)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = _wrapped(super().pipeline)(transaction, shard_hint)
        pipe.__class__ = _Pipeline
        return pipe


class Link:
    """Clients of one Redis or one Redis Cluster, and whether it answers now (logged on every
    change)."""

    def __init__(self, url: str) -> None:
        target = parse(url)
        self.url = url
        self.shown = redacted(url)
        self.cluster = target.cluster
        self._target = target
        #: The publish command: sharded in a Redis Cluster.
        self.pub = "SPUBLISH" if target.cluster else "PUBLISH"
        self._lock = threading.Lock()  # the scripts and the failed nodes
        self._making = threading.Lock()  # the cluster's client, made once
        self._client: Any = None
        self._refresh_now: Callable[[], None] | None = None  # a cluster's: `refresh`
        self._scripts: dict[str, Script] = {}
        self._down: dict[str, float] = {}  # node ("*": any) -> since when it fails
        #: How many times Redis (a node of it) went away (read by the metrics).
        self.outages = 0
        if not target.cluster:
            self._client = self._single()

    # ---- clients ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The shared client (thread-safe: its pools). A cluster's is made on first use, as
        it must reach a node to learn the others (ClusterUnavailable when none answers)."""
        client = self._client
        if client is None:
            with self._making:
                if self._client is None:
                    self._client = self._make_cluster()
                client = self._client
        return client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def make_client(self) -> Any:
        """A new client with its own pool (one Redis); a cluster's shared one (its pools are
        per node, and pub/sub connections are taken from them: cluster/bus.py)."""
        return self._single() if not self.cluster else self.client

    def _single(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )

    def _make_cluster(self) -> _Cluster:
        rest = [ClusterNode(host, port) for host, port in self._target.nodes[1:]]
        try:
            client = _Cluster(
                url=self._target.first,
                startup_nodes=rest,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                require_full_coverage=False,
            )
        except ValueError as exc:  # an option of the URL's query redis-py refuses
            raise ClusterError(f"--cluster {self.shown}: {exc}") from None
        except RedisClusterException as exc:
            raise ClusterUnavailable(" ".join(str(exc).split()[:12])) from None
        self._refresh_now = _own_refreshes(client)
        return client

    def refresh(self) -> None:
        """Read the cluster's slots again if a failure or a redirection asked for it (the
        presence thread, once a second: cluster/presence.py; never a client's path)."""
        run = self._refresh_now
        if run is not None and self._client is not None:
            try:
                run()
            except Exception as exc:  # a topology that cannot be read now: next time
                log.debug("redis %s: reading the slots failed: %s", self.shown, _one_line(exc))

    def node_client(self, node: Any) -> redis.Redis:
        """The client of one node of a cluster (its pool)."""
        return self.client.get_redis_connection(node)  # type: ignore[no-any-return]

    def node_of(self, key: str, slot: int | None = None) -> Any:
        """The node that serves `key` (or a channel; its `slot` when known) now, as this
        client knows it."""
        client = self.client
        return client.nodes_manager.get_node_from_slot(
            client.keyslot(key) if slot is None else slot
        )

    def primaries(self) -> list[Any]:
        return list(self.client.get_primaries()) if self.cluster else []

    # ---- commands -----------------------------------------------------------------------
    def execute_once(self, pipe: Any) -> list[Any]:
        """A pipeline's replies, each command sent once (errors, redirections of a Redis
        Cluster too, in the list: the caller sends again what was not run)."""
        if self.cluster:
            return pipe.execute_once()  # type: ignore[no-any-return]
        # redis-py's pipeline asks `SCRIPT EXISTS` for its scripts before every execute: one
        # more round trip per pipeline, on the path of every crossing. The callers of this
        # method already load what a reply says is missing and send again what it refused
        # (as on a Redis Cluster, whose pipeline never asks), so the pipeline is not told.
        pipe.scripts.clear()
        return list(pipe.execute(raise_on_error=False))

    def publish(self, target: Any, channel: str, payload: bytes | str) -> Any:
        """PUBLISH (SPUBLISH in a cluster) through a client or a pipeline."""
        return target.execute_command(self.pub, channel, payload)

    def script(self, text: str) -> Script:
        """A Lua script, registered once per link (loaded again where a node lacks it:
        `load_scripts`)."""
        client = self.client
        with self._lock:
            found = self._scripts.get(text)
            if found is None:
                found = self._scripts[text] = client.register_script(text)
            return found

    def load_scripts(self) -> None:
        """Load every script this link runs on every node (a pipeline's EVALSHA does not
        load a script itself in a cluster; a node restarted has none)."""
        with self._lock:
            texts = list(self._scripts)
        for text in texts:
            self.client.script_load(text)

    # ---- whether Redis answers ------------------------------------------------------------
    @property
    def up(self) -> bool:
        """Every node answers (one Redis: it answers)."""
        return not self._down

    def reachable(self, key: str | None = None) -> bool:
        """Whether the node that serves `key` (or a channel) is thought to answer."""
        down = self._down
        if not down:
            return True
        if _ANY in down or key is None or not self.cluster:
            return False
        try:
            return self.node_of(key).name not in down
        except RedisClusterException:
            return False

    def failed(self, exc: BaseException, node: str | None = None) -> None:
        """A command failed for want of Redis (of one of its nodes: `node`, or the one the
        error names): say it once, until it is back."""
        if not self.cluster:
            node = _ANY
        elif node is None:
            node = _node_of_error(exc)
        with self._lock:
            fresh = not self._down
            new = node not in self._down
            self._down.setdefault(node, time.monotonic())
            self.outages += fresh
        if new:
            where = self.shown if node == _ANY else f"{self.shown} node {node}"
            log.error(
                "redis %s went away (%s): cross-node traffic stops, local goes on",
                where,
                _one_line(exc),
            )

    def works(self, node: str | None = None) -> None:
        """A command succeeded: on one Redis, it is back. In a cluster, a success tells of
        the node it ran on only (`node`), or that some node answers (`None`); the nodes
        that failed come back through `check`."""
        with self._lock:
            if not self._down:
                return
            gone = list(self._down) if not self.cluster else [n for n in (_ANY, node) if n]
            back = [n for n in gone if self._down.pop(n, None) is not None]
        for name in back:
            log.warning(
                "redis %s is back", self.shown if name == _ANY else f"{self.shown} node {name}"
            )

    def check(self) -> bool:
        """Ask Redis (each node of a cluster) whether it answers; what answers is back, what
        does not has failed. Whether every node answered."""
        if not self.cluster:
            try:
                self.client.ping()
            except redis.RedisError as exc:
                self.failed(exc)
                return False
            self.works()
            return True
        self.refresh()
        try:
            nodes = self.primaries()
        except redis.RedisError as exc:
            self.failed(exc)
            return False
        if nodes:
            self._forget_former({node.name for node in nodes})
        every = bool(nodes)
        for node in nodes:
            try:
                self.node_client(node).ping()
            except redis.RedisError as exc:
                self.failed(exc, node.name)
                every = False
                continue
            self.works(node.name)
        if every:
            self.works(_ANY)
        return every

    def _forget_former(self, masters: set[str]) -> None:
        """Nodes that failed and serve no slot now (a replica took their slots: a failover)
        are no longer waited for. Without this the link stayed down for good after a
        failover: `up` False, every room request refused, the node's health failing."""
        with self._lock:
            former = [name for name in self._down if name != _ANY and name not in masters]
            for name in former:
                del self._down[name]
        for name in former:
            log.warning(
                "redis %s node %s serves no slot now (its replica took over?): not waited for",
                self.shown,
                name,
            )


def _own_refreshes(client: RedisCluster) -> Callable[[], None] | None:
    """Take the slot map's refresh off the callers' paths; the function that runs it.

    redis-py reads the slot map again after a connection error, from inside the next
    command of whichever thread comes next, asking each node in turn with the link's
    timeout: with every master frozen that is one timeout per master, held by a login or
    a sender (a second each here). Here the request is only noted; `Link.refresh` runs
    it on the presence thread. (A version of redis-py without that hook keeps its own
    way: slower under a frozen cluster, as correct.)
    """
    manager = client.nodes_manager
    run = getattr(manager, "_run_requested_refresh", None)
    if run is None:
        return None
    retry = client.retry

    def noted(*_args: Any, **_kwargs: Any) -> None:
        """Left for `Link.refresh`."""

    manager._run_requested_refresh = noted
    return lambda: run(retry)


def _node_of_error(exc: BaseException) -> str:
    """The node (host:port) a cluster command failed on, when redis-py says it."""
    where = getattr(exc, "connection", None)
    name = getattr(where, "name", None)
    if isinstance(name, str) and name:
        return name
    host, port = getattr(where, "host", None), getattr(where, "port", None)
    if host and port:
        return f"{host}:{port}"
    return _ANY


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
