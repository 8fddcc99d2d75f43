"""The cluster's threads do not die or wedge silently (issue "1 of 6").

A real redis-server (conftest.py); the broker's publisher and subscriber and
the presence's control subscriber and presence thread, driven directly
(`RedisBroker`, `RedisPresence`) with two nodes in one process. A failure is
injected once into what each thread calls (the core's side: a `Deliverer`, a
`then`, a `PresenceListener`; or the Redis client and the box under it): it is
logged once with its traceback, and the next message or announcement goes
through. The other threads: tests/server/test_thread_failures.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from chat.server.cluster import bus, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import RedisBroker
from chat.server.cluster.link import Link
from chat.server.cluster.presence import RedisPresence
from chat.server.crypto.cipher import load_cipher
from chat.shared.messages import Msg, encode_msgs

from .conftest import AnyRedis

KEY = bytes(range(32))


def one(text: str, to: str | tuple[str, ...] = ("bob",)) -> tuple[Msg, ...]:
    """A message from alice, as the send path hands it to the broker."""
    return (Msg(7, "alice", to, text, 1765000000.5),)


def framed(text: str, to: str | tuple[str, ...] = ("bob",)) -> bytes:
    """Its frame, as a recipient gets it (rebuilt by the receiving node)."""
    return encode_msgs(one(text, to))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def the_traceback(
    caplog: pytest.LogCaptureFixture, kind: type[BaseException], words: str
) -> logging.LogRecord:
    """The one record with a traceback (waited for: other threads log it)."""
    assert wait_until(lambda: any(r.exc_info for r in caplog.records))
    time.sleep(0.1)  # a second one would come now
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    (record,) = tracebacks
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is kind
    assert words in record.getMessage(), record.getMessage()
    return record


class Outcome:
    """A publish's `then`: what it was told, once."""

    def __init__(self, raises: bool = False) -> None:
        self.told: list[bool] = []
        self.event = threading.Event()
        self.raises = raises

    def __call__(self, taken: bool) -> None:
        self.told.append(taken)
        self.event.set()
        if self.raises:
            raise RuntimeError("injected: a publish's then")

    def wait(self) -> bool:
        assert self.event.wait(5), "the publish was never answered"
        assert len(self.told) == 1
        return self.told[0]


class Inbox:
    """A `Deliverer` that notes what it gets; `fail` makes it raise for the first one
    (after `hold` is set, when given: the test publishes more meanwhile)."""

    def __init__(self, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.got: list[tuple[str, tuple[str, ...] | None, bytes]] = []
        self.fail = fail
        self.hold = hold
        self.entered = threading.Event()
        self._cond = threading.Condition()

    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        self.entered.set()
        if self.fail:
            self.fail = False
            if self.hold is not None:
                assert self.hold.wait(5)
            raise RuntimeError("injected: the deliverer")
        with self._cond:
            self.got.append((sender, None if names is None else tuple(names), frames))
            self._cond.notify_all()

    def delivered(self) -> None:
        pass

    def frames(self) -> list[bytes]:
        with self._cond:
            return [f for _, _, f in self.got]

    def wait_for(self, frames: bytes, timeout: float = 5.0) -> bool:
        return wait_until(lambda: frames in self.frames(), timeout)


class FlakyClient:
    """A Redis client whose next `pipeline()` raises (armed by the test)."""

    def __init__(self, inner: redis.Redis) -> None:
        self._inner = inner
        self.armed = False

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise RuntimeError("injected: the publisher's pipeline")
        return self._inner.pipeline(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FlakyBox:
    """The box, whose next `seal` raises (armed by the test)."""

    def __init__(self, inner: Box) -> None:
        self._inner = inner
        self.armed = False

    def blind(self, kind: str, *parts: str) -> str:
        return self._inner.blind(kind, *parts)

    def check_value(self) -> bytes:
        return self._inner.check_value()

    def seal(self, context: bytes, plain: bytes) -> bytes:
        if self.armed:
            self.armed = False
            raise RuntimeError("injected: sealing an announcement")
        return self._inner.seal(context, plain)

    def open(self, context: bytes, blob: bytes) -> bytes | None:
        return self._inner.open(context, blob)


class Picture:
    """A `PresenceListener`: who it was told is online elsewhere; `fail` makes its first
    `elsewhere` raise."""

    def __init__(self, fail: bool = False) -> None:
        self.names: set[str] = set()
        self.fail = fail
        self.resets = 0
        self._lock = threading.Lock()

    def elsewhere(self, name: str, visible: bool) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("injected: the presence listener")
        with self._lock:
            if visible:
                self.names.add(name)
            else:
                self.names.discard(name)

    def elsewhere_reset(self, names: set[str]) -> None:
        with self._lock:
            self.names = set(names)
            self.resets += 1

    def settled(self) -> None:
        pass

    def now(self) -> set[str]:
        with self._lock:
            return set(self.names)


@pytest.fixture
def box() -> Box:
    return Box(KEY, load_cipher())


@pytest.fixture
def parts() -> Iterator[list[Any]]:
    """Brokers and presences started by a test: stopped after it, in reverse."""
    started: list[Any] = []
    yield started
    for part in reversed(started):
        part.stop()


def subscribers(server: AnyRedis, node: str) -> int:
    return server.subscribers(keys.node_inbox(node))


def broker(server: AnyRedis, box: Any, node: str, inbox: Inbox, parts: list[Any]) -> RedisBroker:
    b = RedisBroker(Link(server.url), box, node)
    b.start(inbox)
    parts.append(b)
    return b


# ---- the broker: publisher -----------------------------------------------------------------
def test_a_publish_whose_then_raises_is_logged_and_the_next_publish_is_answered(
    redis_server: AnyRedis, box: Box, parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    a = broker(redis_server, box, "a", Inbox(), parts)
    broker(redis_server, box, "b", inbox, parts)
    first = Outcome(raises=True)
    a.publish("b", "alice", ["bob"], one("first"), first)
    assert first.wait() is True
    the_traceback(caplog, RuntimeError, "telling a publish's outcome failed")
    second = Outcome()
    a.publish("b", "alice", ["bob"], one("second"), second)
    assert second.wait() is True and inbox.wait_for(framed("second"))


def test_a_publisher_that_meets_an_unexpected_error_answers_not_taken_and_goes_on(
    redis_server: AnyRedis, box: Box, parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    link = Link(redis_server.url)
    flaky = FlakyClient(link.client)
    link.client = flaky  # type: ignore[assignment]
    a = RedisBroker(link, box, "a")
    a.start(Inbox())
    parts.append(a)
    broker(redis_server, box, "b", inbox, parts)
    flaky.armed = True
    first = Outcome()
    a.publish("b", "alice", ["bob"], one("first"), first)
    assert first.wait() is False  # answered: not taken, so not `delivered`
    the_traceback(caplog, RuntimeError, "publishing a batch failed")
    second = Outcome()
    a.publish("b", "alice", None, one("second", "*"), second)
    assert second.wait() is True and inbox.wait_for(framed("second", "*"))
    assert inbox.got[-1] == ("alice", None, framed("second", "*"))


# ---- the broker: subscriber ----------------------------------------------------------------
def test_a_deliverer_that_raises_is_logged_and_the_next_published_message_is_delivered(
    redis_server: AnyRedis, box: Box, parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox(fail=True)
    a = broker(redis_server, box, "a", Inbox(), parts)
    broker(redis_server, box, "b", inbox, parts)
    first = Outcome()
    a.publish("b", "alice", ["bob"], one("first"), first)
    assert first.wait() is True
    the_traceback(caplog, RuntimeError, "delivering a message from another node failed")
    # The subscriber may take a moment to be back: until then a publish is not taken.
    wait_until(lambda: subscribers(redis_server, "b") == 0, 1.0)
    assert wait_until(lambda: subscribers(redis_server, "b") == 1)
    second = Outcome()
    a.publish("b", "alice", ["bob"], one("second"), second)
    assert second.wait() is True and inbox.wait_for(framed("second"))
    assert inbox.frames() == [framed("second")]


def test_messages_taken_while_the_deliverer_failed_are_delivered(
    redis_server: AnyRedis, box: Box, parts: list[Any]
) -> None:
    hold = threading.Event()
    inbox = Inbox(fail=True, hold=hold)
    a = broker(redis_server, box, "a", Inbox(), parts)
    broker(redis_server, box, "b", inbox, parts)
    first = Outcome()
    a.publish("b", "alice", ["bob"], one("first"), first)
    assert inbox.entered.wait(5)  # the subscriber is in the deliverer, which will raise
    later = [Outcome() for _ in range(2)]
    for i, then in enumerate(later):
        a.publish("b", "alice", ["bob"], one(f"later {i}"), then)
    assert [then.wait() for then in later] == [True, True]  # taken by node b
    hold.set()
    # "delivered never lies": what node b took reaches its users.
    assert inbox.wait_for(framed("later 1"), 3.0), inbox.frames()
    assert inbox.frames() == [framed("later 0"), framed("later 1")]


# ---- the presence ----------------------------------------------------------------------------
def presence(
    server: AnyRedis, box: Any, node: str, listener: Picture, parts: list[Any]
) -> RedisPresence:
    p = RedisPresence(Link(server.url), box, node)
    p.start(listener)
    parts.append(p)
    return p


def test_a_presence_listener_that_raises_is_logged_and_the_picture_comes_right(
    redis_server: AnyRedis, box: Box, parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    picture = Picture(fail=True)
    presence(redis_server, box, "a", picture, parts)
    b = presence(redis_server, box, "b", Picture(), parts)
    b.arrived("bob")  # node a's listener raises on it
    the_traceback(caplog, RuntimeError, "control subscriber failed")
    # The change it failed on is not lost (the subscriber reads the picture again) ...
    assert wait_until(lambda: picture.now() == {"bob"}), picture.now()
    # ... and the next one is heard.
    b.arrived("carol")
    assert wait_until(lambda: picture.now() == {"bob", "carol"}), picture.now()
    b.departed("bob")
    assert wait_until(lambda: picture.now() == {"carol"}), picture.now()


def test_a_presence_thread_that_meets_an_unexpected_error_goes_on_announcing(
    redis_server: AnyRedis, box: Box, parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    picture = Picture()
    presence(redis_server, box, "a", picture, parts)
    flaky = FlakyBox(box)
    b = presence(redis_server, flaky, "b", Picture(), parts)
    flaky.armed = True
    b.arrived("bob")  # node b's presence thread fails sealing it
    the_traceback(caplog, RuntimeError, "presence thread met an unexpected error")
    b.arrived("carol")
    assert wait_until(lambda: "carol" in picture.now()), picture.now()
    # Its heartbeat goes on: node b is not taken for dead.
    time.sleep(1.5)
    assert "carol" in picture.now()


def test_an_announcement_the_presence_thread_failed_to_send_is_made_later(
    redis_server: AnyRedis, box: Box, parts: list[Any]
) -> None:
    picture = Picture()
    presence(redis_server, box, "a", picture, parts)
    flaky = FlakyBox(box)
    b = presence(redis_server, flaky, "b", Picture(), parts)
    flaky.armed = True
    b.arrived("bob")
    assert wait_until(lambda: "bob" in picture.now(), 8.0), picture.now()


# ---- lifetimes: a stop does not wait out a subscriber's poll ----------------------------------
def test_a_subscribers_poll_ends_at_once_when_woken_and_hears_what_comes_next(
    redis_server: AnyRedis,
) -> None:
    """`wake` ends a poll under way: a node's stop used to wait out each subscriber's poll
    (a second apiece, one after the other: 2 s for an idle node). Waking after `close`
    does nothing (the pipe's numbers may be another file's by then)."""
    link = Link(redis_server.url)
    channel = keys.node_inbox("wake-test")
    sub = bus.Subscriber(link, [channel])
    sub.open()
    got: list[Any] = []
    poller = threading.Thread(target=lambda: got.append(sub.poll(60.0)))
    poller.start()
    time.sleep(0.2)  # in its select (if not yet, the wake is kept for it)
    sub.wake()
    poller.join(10)
    assert not poller.is_alive() and got == [[]]  # woken, well before its 60 s
    link.publish(link.client, channel, b"after the wake")
    events = sub.poll(10.0)
    assert [e.data for e in events if isinstance(e, bus.Message)] == [b"after the wake"]
    sub.close()
    sub.wake()  # after close: nothing, no error


def test_stopping_a_broker_and_a_presence_wakes_their_subscribers(
    redis_server: AnyRedis, box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[bus.Subscriber] = []
    real = bus.Subscriber.wake

    def counting(self: bus.Subscriber) -> None:
        woken.append(self)
        real(self)

    monkeypatch.setattr(bus.Subscriber, "wake", counting)
    b = RedisBroker(Link(redis_server.url), box, "a")
    b.start(Inbox())
    p = RedisPresence(Link(redis_server.url), box, "a")
    p.start(Picture())
    threads = [t for t in threading.enumerate() if t.name in ("cluster-sub", "cluster-control")]
    assert len(threads) >= 2
    b.stop()
    p.stop()
    assert len(set(map(id, woken))) == 2
    assert not any(t.is_alive() for t in threads)
