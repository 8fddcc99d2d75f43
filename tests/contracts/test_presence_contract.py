"""The presence seam's contract: `NoPresence` (a server alone) and `RedisPresence` (a node).

The shared part holds for both: start and stop return and leave no thread, the core's
calls never wait, and this node's own users are never "elsewhere". The cluster part
runs two or three `RedisPresence` on one real redis-server with the same key, as
separate nodes (each its own `Link`), and one node in a separate process that is
killed with SIGKILL: the others must reap it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chat.server.cluster import keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.presence import EXPIRES, RedisPresence
from chat.server.cluster.url import ClusterError
from chat.server.core.presence import NoPresence, Presence
from chat.server.crypto.cipher import Cipher

from .conftest import IMPLEMENTATIONS, KEY, OTHER_KEY, AnyRedis, freeze, own_threads, wait_until


class Listener:
    """The hub's side of the seam: what the presence told, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, bool]] = []
        self.resets: list[set[str]] = []
        self.settles = 0

    def elsewhere(self, name: str, visible: bool) -> None:
        with self._lock:
            self.events.append((name, visible))

    def elsewhere_reset(self, names: set[str]) -> None:
        with self._lock:
            self.resets.append(set(names))

    def settled(self) -> None:
        with self._lock:
            self.settles += 1

    def about(self, name: str) -> list[bool]:
        with self._lock:
            return [visible for n, visible in self.events if n == name]


class Nodes:
    """Presences of one kind, each stopped at the end if the test did not."""

    def __init__(self, make: Callable[[str], Presence]) -> None:
        self._make = make
        self._started: list[Presence] = []

    def start(self, node_id: str = "node-a") -> tuple[Presence, Listener]:
        presence, listener = self._make(node_id), Listener()
        presence.start(listener)
        self._started.append(presence)
        return presence, listener

    def stop_all(self) -> None:
        """Every node at once: each stop waits up to a second for its subscriber."""
        stops = [threading.Thread(target=p.stop) for p in self._started]
        for thread in stops:
            thread.start()
        for thread in stops:
            thread.join()


def held(redis_proc: AnyRedis, presence: Presence) -> int:
    """How many users the node's entry in Redis holds (its announcements went out)."""
    assert isinstance(presence, RedisPresence)
    return int(redis_proc.client().hlen(keys.node_users(presence.id)))


def consistent(presence: Presence) -> None:
    """everyone(), nodes() and nodes_of() tell one picture."""
    everyone = presence.everyone()
    for name, where in everyone.items():
        assert where and presence.nodes_of(name) == where
        assert set(where) <= set(presence.nodes())
    assert set(presence.nodes()) == {node for where in everyone.values() for node in where}


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def nodes(kind: str, request: pytest.FixtureRequest, cipher: Cipher) -> Iterator[Nodes]:
    if kind == "alone":
        made = Nodes(lambda _id: NoPresence())
    else:
        redis_proc: AnyRedis = request.getfixturevalue("redis_of")(kind)
        box = Box(KEY, cipher)
        made = Nodes(lambda node_id: RedisPresence(Link(redis_proc.url), box, node_id))
    yield made
    made.stop_all()


@pytest.fixture
def cluster(redis_server: AnyRedis, cipher: Cipher) -> Iterator[Nodes]:
    box = Box(KEY, cipher)
    made = Nodes(lambda node_id: RedisPresence(Link(redis_server.url), box, node_id))
    yield made
    made.stop_all()


# ---- shared: both implementations ------------------------------------------------------------
def test_start_and_stop_return_and_leave_no_thread(nodes: Nodes) -> None:
    before = own_threads()
    presence, _ = nodes.start()
    started = time.monotonic()
    presence.stop()
    assert time.monotonic() - started < 6.0
    assert own_threads() == before


def test_the_cores_calls_never_wait_and_own_users_are_never_elsewhere(
    nodes: Nodes, kind: str, request: pytest.FixtureRequest
) -> None:
    presence, listener = nodes.start()
    names = [f"user{i}" for i in range(200)]
    started = time.monotonic()
    for name in names:
        presence.arrived(name)
    for name in names[:50]:
        presence.departed(name)
    assert time.monotonic() - started < 0.5, "arrived/departed waited"
    if kind != "alone":  # the announcements went out and came back on the channel
        redis_proc: AnyRedis = request.getfixturevalue("redis_of")(kind)
        assert wait_until(lambda: held(redis_proc, presence) == 150)
        time.sleep(0.2)
    for name in names:
        assert presence.nodes_of(name) == ()
    assert presence.everyone() == {} and presence.nodes() == ()
    assert listener.events == []
    consistent(presence)


# ---- cluster: several nodes over one Redis -------------------------------------------------------
def test_an_arrival_is_elsewhere_on_the_other_node_and_a_departure_reverses_it(
    cluster: Nodes,
) -> None:
    a, on_a = cluster.start("node-a")
    b, on_b = cluster.start("node-b")
    a.arrived("alice")
    assert wait_until(lambda: on_b.about("alice") == [True])
    assert b.nodes_of("alice") == ("node-a",)
    assert b.everyone() == {"alice": ("node-a",)} and b.nodes() == ("node-a",)
    assert a.nodes_of("alice") == () and on_a.events == []
    consistent(a)
    consistent(b)
    a.departed("alice")
    assert wait_until(lambda: on_b.about("alice") == [True, False])
    assert b.nodes_of("alice") == () and b.everyone() == {} and b.nodes() == ()
    consistent(b)


def test_a_name_on_two_nodes_is_elsewhere_once_until_its_last_node_lets_it_go(
    cluster: Nodes,
) -> None:
    a, _ = cluster.start("node-a")
    b, on_b = cluster.start("node-b")
    c, on_c = cluster.start("node-c")
    a.arrived("alice")
    c.arrived("alice")
    assert wait_until(lambda: set(b.nodes_of("alice")) == {"node-a", "node-c"})
    assert on_b.about("alice") == [True]
    assert c.nodes_of("alice") == ("node-a",)  # never itself
    consistent(b)
    a.departed("alice")
    assert wait_until(lambda: b.nodes_of("alice") == ("node-c",))
    assert on_b.about("alice") == [True]
    c.departed("alice")
    assert wait_until(lambda: on_b.about("alice") == [True, False])
    assert on_c.about("alice") == [True, False]


def test_a_node_that_joins_later_reads_who_is_where(cluster: Nodes, redis_server: AnyRedis) -> None:
    a, _ = cluster.start("node-a")
    for name in ("alice", "bob"):
        a.arrived(name)
    assert wait_until(lambda: held(redis_server, a) == 2)
    b, on_b = cluster.start("node-b")
    assert on_b.resets and on_b.resets[-1] == {"alice", "bob"}
    assert b.everyone() == {"alice": ("node-a",), "bob": ("node-a",)}
    consistent(b)


def test_a_node_that_stops_takes_its_users_with_it(cluster: Nodes) -> None:
    a, _ = cluster.start("node-a")
    b, on_b = cluster.start("node-b")
    a.arrived("alice")
    assert wait_until(lambda: on_b.about("alice") == [True])
    a.stop()  # without a departure: the node's leaving says it
    assert wait_until(lambda: on_b.about("alice") == [True, False], 2.0)
    assert b.nodes() == ()


DEAD_NODE = """
import sys, time
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.presence import RedisPresence
from chat.server.crypto.cipher import load_cipher

class Quiet:
    def elsewhere(self, name, visible): pass
    def elsewhere_reset(self, names): pass
    def settled(self): pass

presence = RedisPresence(Link(sys.argv[1]), Box(bytes(range(32)), load_cipher()), "node-dead")
presence.start(Quiet())
presence.arrived("zed")
print("up", flush=True)
time.sleep(120)
"""


def test_a_node_killed_without_leaving_is_reaped_and_its_users_leave(
    cluster: Nodes, redis_server: AnyRedis
) -> None:
    b, on_b = cluster.start("node-b")
    dead = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DEAD_NODE), redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert dead.stdout is not None and dead.stdout.readline() == b"up\n"
        assert wait_until(lambda: on_b.about("zed") == [True])
        assert b.nodes_of("zed") == ("node-dead",)
        dead.kill()
        dead.wait(5)
        killed = time.monotonic()
        assert wait_until(lambda: on_b.about("zed") == [True, False], EXPIRES + 4.0)
        took = time.monotonic() - killed
    finally:
        dead.kill()
        dead.wait(5)
    assert took < EXPIRES + 2.5, f"reaped after {took:.1f}s"
    assert b.nodes_of("zed") == () and b.nodes() == ()
    assert redis_server.client().zscore(keys.NODES, "node-dead") is None


def test_a_node_with_another_key_is_refused(
    cluster: Nodes, redis_server: AnyRedis, cipher: Cipher
) -> None:
    a, _ = cluster.start("node-a")
    a.arrived("alice")
    assert wait_until(lambda: held(redis_server, a) == 1)
    before = own_threads()
    stranger = RedisPresence(Link(redis_server.url), Box(OTHER_KEY, cipher), "node-x")
    with pytest.raises(ClusterError, match="key"):
        stranger.start(Listener())
    assert own_threads() == before  # it started nothing
    b, _ = cluster.start("node-b")  # the cluster is untouched by it
    assert b.everyone() == {"alice": ("node-a",)}


def test_the_cores_calls_never_wait_for_a_frozen_redis(
    cluster: Nodes, redis_server: AnyRedis
) -> None:
    a, _ = cluster.start("node-a")
    thaw = freeze(redis_server)
    try:
        started = time.monotonic()
        for i in range(200):
            a.arrived(f"user{i}")
            a.nodes_of(f"user{i}")
        for i in range(100):
            a.departed(f"user{i}")
        a.everyone()
        a.nodes()
        assert time.monotonic() - started < 0.5, "the core waited for Redis"
    finally:
        thaw()


def test_arrivals_while_redis_is_frozen_reach_the_other_nodes_after_it_thaws(
    cluster: Nodes, redis_server: AnyRedis
) -> None:
    a, _ = cluster.start("node-a")
    b, on_b = cluster.start("node-b")
    thaw = freeze(redis_server)
    try:
        a.arrived("alice")
        time.sleep(1.5)  # the presence thread's send times out (Link.TIMEOUT 1 s)
    finally:
        thaw()
    assert wait_until(lambda: on_b.about("alice") == [True], 4.0), "alice never arrived"
    assert b.nodes_of("alice") == ("node-a",)
