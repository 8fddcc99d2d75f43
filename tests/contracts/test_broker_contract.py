"""The broker seam's contract: `NoBroker` (a server alone) and `RedisBroker` (a node).

Shared: start and stop return and leave no thread. A server alone never routes to
another node, so `NoBroker.publish` refuses (LocalProtocolError) and tells nothing.
The cluster part runs brokers of separate nodes (each its own `Link`) on one real
redis-server: what one publishes to another's node id arrives exactly and in order,
and every publish is answered exactly once, also when nobody listens, after the
publisher stopped, and while Redis is frozen (SIGSTOP).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from chat.server.cluster.box import Box
from chat.server.cluster.broker import RedisBroker
from chat.server.cluster.link import TIMEOUT, Link
from chat.server.cluster.presence import RedisPresence
from chat.server.core.broker import Broker, NoBroker
from chat.server.crypto.cipher import Cipher
from chat.shared.errors import LocalProtocolError
from chat.shared.messages import BROADCAST, Msg, encode_msgs

from .conftest import IMPLEMENTATIONS, KEY, OTHER_KEY, AnyRedis, freeze, own_threads, wait_until

Delivery = tuple[str, tuple[str, ...] | None, bytes]
TS = 1765000000.123456


def made(
    sender: str, to: str | tuple[str, ...], *texts: str, first: int = 1, ts: float = TS
) -> tuple[Msg, ...]:
    """Messages as a group of sends makes them (consecutive ids, one time)."""
    return tuple(Msg(first + i, sender, to, text, ts) for i, text in enumerate(texts))


def frames(
    sender: str, to: str | tuple[str, ...], *texts: str, first: int = 1, ts: float = TS
) -> bytes:
    """What a recipient gets of `made(...)`: the frames the sending node fans out."""
    return encode_msgs(made(sender, to, *texts, first=first, ts=ts))


class Deliverer:
    """The core's fan-out as the broker sees it: what arrived, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.got: list[Delivery] = []
        self.told: list[tuple[object, ...]] = []
        self.batches = 0

    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        with self._lock:
            self.got.append((sender, None if names is None else tuple(names), frames))

    def delivered(self) -> None:
        with self._lock:
            self.batches += 1

    # v1.2: what is told, never answered (echo, read, typing)
    def echo(self, sender: str, frames: bytes) -> None:
        with self._lock:
            self.told.append(("echo", sender, frames))

    def read(self, user: str, peer: str, upto: int) -> None:
        with self._lock:
            self.told.append(("read", user, peer, upto))

    def typing(self, sender: str, names: Sequence[str], room: str | None, frame: bytes) -> None:
        with self._lock:
            self.told.append(("typing", sender, tuple(names), room, frame))

    def count(self) -> int:
        with self._lock:
            return len(self.got)


class Answers:
    """Every publish's `then`: how often and with what it was called."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[int, list[bool]] = {}
        self.when: dict[int, float] = {}

    def then(self, n: int) -> Callable[[bool], None]:
        with self._lock:
            self.calls[n] = []

        def told(taken: bool) -> None:
            with self._lock:
                self.calls[n].append(taken)
                self.when.setdefault(n, time.monotonic())

        return told

    def answered(self) -> int:
        with self._lock:
            return sum(1 for c in self.calls.values() if c)

    def of(self, n: int) -> list[bool]:
        with self._lock:
            return list(self.calls[n])


class Brokers:
    """Started brokers, each stopped at the end if the test did not."""

    def __init__(self, make: Callable[[str], Broker]) -> None:
        self._make = make
        self._started: list[Broker] = []

    def start(self, node_id: str) -> tuple[Broker, Deliverer]:
        broker, deliverer = self._make(node_id), Deliverer()
        broker.start(deliverer)
        self._started.append(broker)
        return broker, deliverer

    def stop_all(self) -> None:
        """Every broker at once: each stop waits up to a second for its subscriber."""
        stops = [threading.Thread(target=b.stop) for b in self._started]
        for thread in stops:
            thread.start()
        for thread in stops:
            thread.join()


@pytest.fixture(params=IMPLEMENTATIONS)
def brokers(request: pytest.FixtureRequest, cipher: Cipher) -> Iterator[Brokers]:
    if request.param == "alone":
        made = Brokers(lambda _id: NoBroker())
    else:
        redis_proc: AnyRedis = request.getfixturevalue("redis_of")(request.param)
        box = Box(KEY, cipher)
        made = Brokers(lambda node_id: RedisBroker(Link(redis_proc.url), box, node_id))
    yield made
    made.stop_all()


@pytest.fixture
def cluster(redis_server: AnyRedis, cipher: Cipher) -> Iterator[Brokers]:
    box = Box(KEY, cipher)
    made = Brokers(lambda node_id: RedisBroker(Link(redis_server.url), box, node_id))
    yield made
    made.stop_all()


# ---- shared: both implementations --------------------------------------------------------------
def test_start_and_stop_return_and_leave_no_thread(brokers: Brokers) -> None:
    before = own_threads()
    broker, deliverer = brokers.start("node-a")
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 6.0
    assert own_threads() == before
    assert deliverer.got == []


def test_a_server_alone_never_routes_to_another_node() -> None:
    broker = NoBroker()
    broker.start(Deliverer())
    answers = Answers()
    with pytest.raises(LocalProtocolError):
        broker.publish("node-b", "alice", ["bob"], made("alice", ("bob",), "x"), answers.then(0))
    assert answers.of(0) == []  # refused at once: nothing will ever be told
    broker.stop()


# ---- cluster: brokers of several nodes over one Redis --------------------------------------------
def test_messages_arrive_exactly_and_in_order_and_each_is_answered_once(
    cluster: Brokers,
) -> None:
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    _, on_c = cluster.start("node-c")
    answers = Answers()
    sent: list[Delivery] = []
    for n in range(500):
        sender = ("alice", "carol")[n % 2]
        names = None if n % 5 == 0 else tuple(f"user{k}" for k in range(n % 4 + 1))
        to = BROADCAST if names is None else (*names, "dave")  # dave is elsewhere
        texts = [os.urandom(n % 97).hex() + '\u00e9\U0001f600"\\' for _ in range(n % 3 + 1)]
        sent.append((sender, names, frames(sender, to, *texts, first=n * 10 + 1, ts=TS + n)))
        msgs = made(sender, to, *texts, first=n * 10 + 1, ts=TS + n)
        a.publish("node-b", sender, names, msgs, answers.then(n))
    assert wait_until(lambda: answers.answered() == 500 and on_b.count() == 500, 10.0)
    time.sleep(0.2)  # nothing more comes
    assert on_b.got == sent
    assert all(answers.of(n) == [True] for n in range(500))
    assert on_b.batches >= 1
    assert on_c.got == []  # another node's inbox is not this one's


def test_echoes_markers_and_typing_arrive_as_what_they_are_in_order(cluster: Brokers) -> None:
    """v1.2 section 10: a user's own messages, markers and typing reach its (or the
    recipients') other node, each kind to its own handler, in the order told."""
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    a.echo("node-b", "alice", made("alice", ("bob",), "alice's own"))
    a.read("node-b", "alice", "#dev", 41)
    a.typing("node-b", "alice", ["bob", "carol"], None, b"typing to people")
    a.typing("node-b", "alice", [], "#Dev", b"typing to a room")
    a.read("node-b", "alice", "*", 2**53 - 1)
    answers = Answers()
    a.publish("node-b", "alice", ["bob"], made("alice", ("bob",), "a message"), answers.then(0))
    assert wait_until(lambda: on_b.count() == 1 and len(on_b.told) == 5)
    assert on_b.told == [
        ("echo", "alice", frames("alice", ("bob",), "alice's own")),
        ("read", "alice", "#dev", 41),
        ("typing", "alice", ("bob", "carol"), None, b"typing to people"),
        ("typing", "alice", (), "#Dev", b"typing to a room"),
        ("read", "alice", "*", 2**53 - 1),
    ]
    assert on_b.got == [("alice", ("bob",), frames("alice", ("bob",), "a message"))]
    assert answers.of(0) == [True]


def test_a_publish_to_a_node_nobody_listens_on_is_not_taken(cluster: Brokers) -> None:
    a, _ = cluster.start("node-a")
    answers = Answers()
    a.publish("node-gone", "alice", ["bob"], made("alice", ("bob",), "x"), answers.then(0))
    a.publish("node-a-typo", "alice", None, made("alice", "*", "x"), answers.then(1))
    assert wait_until(lambda: answers.answered() == 2)
    time.sleep(0.1)
    assert answers.of(0) == [False] and answers.of(1) == [False]


def test_after_the_publisher_stopped_a_publish_is_refused_at_once(cluster: Brokers) -> None:
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    a.stop()
    answers = Answers()
    a.publish("node-b", "alice", ["bob"], made("alice", ("bob",), "late"), answers.then(0))
    assert answers.of(0) == [False]  # within the call: nothing is left waiting
    time.sleep(0.2)
    assert answers.of(0) == [False] and on_b.got == []


def test_a_message_that_does_not_open_is_dropped_and_delivery_goes_on(
    cluster: Brokers, redis_server: AnyRedis, cipher: Cipher
) -> None:
    _, on_b = cluster.start("node-b")
    stranger = RedisBroker(Link(redis_server.url), Box(OTHER_KEY, cipher), "node-x")
    answers = Answers()
    stranger.start(Deliverer())
    try:
        forged = made("mallory", ("bob",), "forged")
        stranger.publish("node-b", "mallory", ["bob"], forged, answers.then(0))
        assert wait_until(lambda: answers.answered() == 1)
    finally:
        stranger.stop()
    a, _ = cluster.start("node-a")
    a.publish("node-b", "alice", ["bob"], made("alice", ("bob",), "genuine"), answers.then(1))
    assert wait_until(lambda: on_b.count() == 1)
    assert on_b.got == [("alice", ("bob",), frames("alice", ("bob",), "genuine"))]


def frozen_publishes(redis_server: AnyRedis, a: Broker) -> Answers:
    """Publish while Redis is frozen; every publish answered False, the first within the
    link's timeout, the later ones at once. Redis is thawed on return."""
    answers = Answers()
    thaw = freeze(redis_server)
    try:
        started = time.monotonic()
        a.publish("node-b", "alice", ["bob"], made("alice", ("bob",), "frozen 0"), answers.then(0))
        assert wait_until(lambda: answers.answered() == 1, TIMEOUT + 2.0)
        assert answers.when[0] - started < TIMEOUT + 1.0
        for n in range(1, 4):
            asked = time.monotonic()
            frozen = made("alice", ("bob",), f"frozen {n}")
            a.publish("node-b", "alice", ["bob"], frozen, answers.then(n))
            assert wait_until(lambda n=n: answers.of(n) != [], 1.0)
            assert answers.when[n] - asked < 0.5, "a publish waited for the frozen Redis"
    finally:
        thaw()
    assert all(answers.of(n) == [False] for n in range(4))
    return answers


def recovers(a: Broker, on_b: Deliverer, within: float) -> bool:
    """Whether a publish is taken again, and arrives, within `within` seconds."""
    answers = Answers()
    deadline = time.monotonic() + within
    n = 0
    while time.monotonic() < deadline:
        a.publish(
            "node-b", "alice", ["bob"], made("alice", ("bob",), f"after {n}"), answers.then(n)
        )
        if wait_until(lambda n=n: answers.of(n) != [], 2.0) and answers.of(n) == [True]:
            after = frames("alice", ("bob",), f"after {n}")
            return wait_until(lambda after=after: any(g[2] == after for g in on_b.got))
        n += 1
        time.sleep(0.2)
    return False


def test_a_frozen_redis_is_answered_within_the_links_timeout(
    cluster: Brokers, redis_server: AnyRedis
) -> None:
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    frozen_publishes(redis_server, a)
    time.sleep(0.5)
    # Those answered at once were never sent: "not taken" is not a copy arriving later.
    # (The first one was on its way when the link gave up: it may or may not arrive.)
    first = frames("alice", ("bob",), "frozen 0")
    assert [g[2] for g in on_b.got if g[2] != first] == []


def test_a_node_recovers_after_a_freeze(
    redis_server: AnyRedis, cipher: Cipher, cluster: Brokers
) -> None:
    """The broker on a link shared with the node's presence, as app.open_cluster builds it:
    the heartbeat tells the link Redis is back."""
    box = Box(KEY, cipher)
    link = Link(redis_server.url)
    a = RedisBroker(link, box, "node-a")
    presence = RedisPresence(link, box, "node-a")
    presence.start(_QuietListener())
    a.start(Deliverer())
    try:
        _, on_b = cluster.start("node-b")
        frozen_publishes(redis_server, a)
        assert recovers(a, on_b, 5.0), "the node's broker did not recover"
    finally:
        a.stop()
        presence.stop()


def test_the_broker_alone_recovers_after_a_freeze(cluster: Brokers, redis_server: AnyRedis) -> None:
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    frozen_publishes(redis_server, a)
    assert recovers(a, on_b, 4.0), "the broker did not recover after SIGCONT"


class _QuietListener:
    def elsewhere(self, name: str, visible: bool) -> None:
        pass

    def elsewhere_reset(self, names: set[str]) -> None:
        pass

    def settled(self) -> None:
        pass


def test_an_inbox_redis_lost_is_read_from_its_new_start_and_never_lies(
    cluster: Brokers, redis_server: AnyRedis
) -> None:
    """A master restarted empty (a lost shard back, no persistence) starts a node's inbox
    anew, numbered from 1 again: what the receiver takes of it is delivered, never dropped
    for a number it had already seen, so a `True` answer is never a message lost."""
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    answers = Answers()
    for n in range(30):
        a.publish(
            "node-b", "alice", ["bob"], made("alice", ("bob",), f"before {n}"), answers.then(n)
        )
    assert wait_until(lambda: on_b.count() == 30)
    client = redis_server.client()
    for key in client.scan_iter(match="chat:{n:node-b}:inbox:*"):  # what a restart loses
        client.delete(key)
    for n in range(30, 35):
        a.publish(
            "node-b", "alice", ["bob"], made("alice", ("bob",), f"after {n}"), answers.then(n)
        )
    assert wait_until(lambda: all(answers.of(n) for n in range(30, 35)))
    taken = [n for n in range(30, 35) if answers.of(n) == [True]]
    assert taken, "nothing was taken after the loss"
    assert wait_until(
        lambda: (
            {frames("alice", ("bob",), f"after {n}") for n in taken} <= {g[2] for g in on_b.got}
        ),
        3.0,
    ), "a message answered as taken never arrived"
    got = [g[2] for g in on_b.got]
    assert len(got) == len(set(got)), "a message arrived twice"


def test_what_waits_for_one_node_goes_in_few_publishes(
    cluster: Brokers, redis_server: AnyRedis
) -> None:
    """Issue "6 of 6", cheaper crossings: messages handed over faster than Redis answers are
    packed, one publish per node per publisher turn (the inbox's stream has an entry per
    publish), and still arrive each once, in order, each answered."""
    a, _ = cluster.start("node-a")
    _, on_b = cluster.start("node-b")
    answers = Answers()
    sent = [frames("alice", ("bob",), f"packed {n}", first=n + 1) for n in range(500)]
    for n in range(500):
        msgs = made("alice", ("bob",), f"packed {n}", first=n + 1)
        a.publish("node-b", "alice", ["bob"], msgs, answers.then(n))
    assert wait_until(lambda: answers.answered() == 500 and on_b.count() == 500, 10.0)
    assert [g[2] for g in on_b.got] == sent
    assert all(answers.of(n) == [True] for n in range(500))
    publishes = int(redis_server.client().xlen("chat:{n:node-b}:inbox:log"))
    assert 0 < publishes < 250, publishes
