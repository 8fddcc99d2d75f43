"""The rooms' broker (cluster/rooms.py) driven directly: two nodes in one process, one real Redis.

Each node is a `RedisRooms` with its own link and a `Feed`: the core's side as
the broker sees it (`RoomFeed`), here a real `RoomBook` replica without
sessions, noting what it was told. What is checked: both threads start in
`start` and are gone after `stop`; a change decided on one node is applied by
both, once, in version order, and its requester is answered only once its own
replica has it; a failure injected once into the feed (either thread) is
logged once with its traceback and the next item goes through; a frozen Redis
answers a request without holding it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec
import pytest

from chat.server.cluster import bus, crossing, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import RedisBroker
from chat.server.cluster.link import Link
from chat.server.cluster.presence import RedisPresence
from chat.server.cluster.rooms import RedisRooms
from chat.server.core.rooms import Event, Room, RoomBook
from chat.server.crypto.cipher import load_cipher
from chat.shared.errors import Code, RemoteProtocolError, Trouble
from chat.shared.messages import Msg, encode_msgs
from chat.shared.requests import RoomCreate, RoomJoin, RoomTopic

from .conftest import AnyRedis

KEY = bytes(range(32))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Feed:
    """A replica without sessions: the core's RoomBook, what it applied, what it kept."""

    def __init__(self) -> None:
        self.book = RoomBook()
        self.lock = threading.Lock()
        self.applied: list[tuple[str, int, tuple[str, ...]]] = []
        self.posts: list[tuple[str, str, Code | None]] = []
        self.frames: list[tuple[str, int, bytes, int]] = []  # (room, last, frames, skip) taken
        self._kept: list[tuple[Msg, ...]] = []
        self.fail_changed = False
        self.fail_scratch = False

    def scratch(self, key: str, room: Room | None, users: Iterable[str]) -> RoomBook:
        if self.fail_scratch:
            self.fail_scratch = False
            raise RuntimeError("injected: the feed's scratch")
        with self.lock:
            return self.book.scratch(key, room, users)

    def reset(self, rooms: list[Room], versions: dict[str, int]) -> None:
        with self.lock:
            self.book.reset(rooms, versions)

    def replace(self, key: str, room: Room | None, version: int) -> None:
        with self.lock:
            self.book.replace(key, room, version)

    def version(self, key: str) -> int:
        with self.lock:
            return self.book.versions.get(key, 0)

    def changed(self, key: str, version: int, events: Sequence[Event]) -> bool:
        if self.fail_changed:
            self.fail_changed = False
            raise RuntimeError("injected: the feed's changed")
        with self.lock:
            done = self.book.apply_events(key, version, events)
            if done:
                self.applied.append((key, version, tuple(e.event for e in events)))
            return done

    def posted(self, sender: str, room: str, last: int, frames: bytes, skip: int) -> Code | None:
        with self.lock:
            try:
                r = self.book.member_room(sender, room)
            except RemoteProtocolError as err:
                self.posts.append((sender, room, err.code))
                return err.code
            self.book.posted(r, last)
            self.posts.append((sender, room, None))
            self.frames.append((room, last, frames, skip))
            return None

    def kept_msgs(self) -> list[tuple[Msg, ...]]:
        with self.lock:
            return list(self._kept)

    def kept(self, msgs: tuple[Msg, ...]) -> None:
        with self.lock:
            self._kept.append(msgs)

    def settled(self) -> None:
        pass


class Answer:
    def __init__(self) -> None:
        self.got: list[object] = []
        self.event = threading.Event()

    def __call__(self, result: object) -> None:
        self.got.append(result)
        self.event.set()

    def wait(self, timeout: float = 5.0) -> object:
        assert self.event.wait(timeout), "never answered"
        time.sleep(0.05)
        assert len(self.got) == 1, self.got
        return self.got[0]


class Node:
    def __init__(self, redis_proc: AnyRedis, name: str) -> None:
        box = Box(KEY, load_cipher())
        self.link = Link(redis_proc.url)
        self.presence = RedisPresence(self.link, box, name)  # its heartbeat sees Redis back
        self.broker = RedisBroker(self.link, box, name)
        self.rooms = RedisRooms(self.link, box, name, self.broker)
        self.feed = Feed()

    def start(self) -> None:
        self.presence.start(_Quiet())
        self.broker.start(_Quiet())  # type: ignore[arg-type]
        self.rooms.start(self.feed)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.rooms.stop()
        self.broker.stop()
        self.presence.stop()

    def ask(self, name: str, request: object, timeout: float = 5.0) -> object:
        answer = Answer()
        expires = time.monotonic() + timeout
        self.rooms.request(name, request, True, expires, answer)  # type: ignore[arg-type]
        return answer.wait(timeout + 1)


class _Quiet:
    """Neither messages nor presence matter here."""

    def deliver(self, *args: object) -> None:
        pass

    def delivered(self) -> None:
        pass

    def elsewhere(self, name: str, visible: bool) -> None:
        pass

    def elsewhere_reset(self, names: set[str]) -> None:
        pass

    def settled(self) -> None:
        pass


def room_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("cluster-"))


@pytest.fixture
def nodes(redis_server: AnyRedis) -> Iterator[tuple[Node, Node]]:
    before = room_threads()
    a, b = Node(redis_server, "node-a"), Node(redis_server, "node-b")
    a.start()
    b.start()
    yield a, b
    for node in (a, b):
        node.stop()
    assert room_threads() == before, "a thread outlived its stop()"


def test_a_change_made_on_one_node_is_applied_by_both_once_in_version_order(
    nodes: tuple[Node, Node], redis_server: AnyRedis
) -> None:
    a, b = nodes
    assert a.ask("alice", RoomCreate(1, "#Dev", "t")) is None
    # Answered only once its own replica has it: a send right after finds it there.
    assert a.feed.book.get("#dev") is not None
    assert b.ask("bob", RoomJoin(2, "#DEV")) is None
    assert b.feed.book.get("#dev").members == {"alice": None, "bob": None}  # type: ignore[union-attr]
    assert b.ask("bob", RoomJoin(3, "#dev")) is None  # a member already: nothing changes
    err = a.ask("carol", RoomTopic(4, "#dev", "x"))
    assert isinstance(err, RemoteProtocolError) and err.code is Code.NOT_MEMBER
    err = b.ask("bob", RoomCreate(5, "#dEV", ""))
    assert isinstance(err, RemoteProtocolError) and err.code is Code.ROOM_EXISTS
    expected = [("#dev", 1, ("created",)), ("#dev", 2, ("joined",))]
    for node in (a, b):
        assert wait_until(lambda node=node: node.feed.applied == expected)
    # A node started now reads the room as Redis has it, version and all.
    late = Node(redis_server, "node-c")
    late.start()
    try:
        room = late.feed.book.get("#dev")
        assert room is not None and list(room.members) == ["alice", "bob"]
        assert late.feed.version("#dev") == 2 and late.feed.applied == []
    finally:
        late.stop()


def test_a_message_gets_one_verdict_everywhere_and_its_own_node_keeps_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    assert a.ask("alice", RoomCreate(1, "#m", "")) is None
    msgs = (Msg(10, "alice", "#m", "hi", time.time()), Msg(11, "alice", "#m", "ho", time.time()))
    verdict = Answer()
    a.rooms.post("alice", "#m", msgs, b"frames", 7, verdict)
    assert verdict.wait() is None
    assert a.feed.kept_msgs() == [msgs] and b.feed.kept_msgs() == []
    assert wait_until(lambda: b.feed.posts == [("alice", "#m", None)])
    assert a.feed.book.get("#m").last == 11  # type: ignore[union-attr]
    refused = Answer()
    b.rooms.post("bob", "#m", (Msg(12, "bob", "#m", "x", time.time()),), b"", 0, refused)
    assert refused.wait() is Code.NOT_MEMBER
    assert b.feed.kept_msgs() == []


def test_a_failure_in_the_feed_is_logged_once_and_the_next_change_goes_through(
    nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes
    b.feed.fail_changed = True
    a.feed.fail_scratch = True
    with caplog.at_level(logging.ERROR, logger="chat.server.cluster"):
        failed = a.ask("alice", RoomCreate(1, "#f", ""))
        assert isinstance(failed, RemoteProtocolError)
        assert (failed.code, failed.message) == (Code.RATE_LIMITED, Trouble.INTERNAL)
        assert a.ask("alice", RoomCreate(2, "#f", "")) is None  # the rooms thread goes on
        assert a.ask("alice", RoomTopic(3, "#f", "second")) is None
        assert wait_until(lambda: b.feed.book.get("#f") is not None)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2, [r.getMessage() for r in tracebacks]
    assert {r.exc_info[1].args[0] for r in tracebacks if r.exc_info} == {
        "injected: the feed's scratch",
        "injected: the feed's changed",
    }
    # b missed the creation (its feed failed on it): the next change found the gap and
    # read the room as Redis has it.
    assert b.feed.book.get("#f").topic == "second"  # type: ignore[union-attr]


def test_a_frozen_redis_answers_a_request_without_holding_it(
    nodes: tuple[Node, Node], redis_server: AnyRedis
) -> None:
    a, _ = nodes
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        first = a.ask("alice", RoomCreate(1, "#cold", ""), timeout=3)
        assert isinstance(first, RemoteProtocolError) and first.message == Trouble.CLUSTER
        assert time.monotonic() - started < 2.0  # the link's timeout, no retry
        started = time.monotonic()
        second = a.ask("alice", RoomCreate(2, "#cold", ""), timeout=3)
        assert isinstance(second, RemoteProtocolError) and second.message == Trouble.CLUSTER
        assert time.monotonic() - started < 0.3  # Redis known away: at once
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert wait_until(lambda: a.link.up, 3)  # the node's heartbeat saw Redis back
    assert a.ask("alice", RoomCreate(3, "#cold", "")) is None


def test_a_rooms_messages_cross_as_their_parts_and_every_node_rebuilds_the_same_frames(
    nodes: tuple[Node, Node], redis_server: AnyRedis
) -> None:
    """Issue 22, cheaper crossings: a room's group of sends goes into the shard's log as
    `crossing.Post` (no frames), and each node fans out `encode_msgs` of it, the frames
    the sender's node made; a post that is not one group (never from the core) still
    crosses, as its frames."""
    a, b = nodes
    assert a.ask("alice", RoomCreate(1, "#Dev", "")) is None
    assert b.ask("bob", RoomJoin(2, "#dev")) is None
    now = time.time()
    texts = ['h\u00e9 "q" \\ \u2028', "\U0001f600" * 30, "x" * 100]
    msgs = tuple(Msg(20 + i, "alice", "#Dev", t, now) for i, t in enumerate(texts))
    verdict = Answer()
    a.rooms.post("alice", "#Dev", msgs, encode_msgs(msgs), 7, verdict)
    assert verdict.wait() is None
    assert wait_until(lambda: len(b.feed.frames) == 1)
    assert a.feed.frames == [("#Dev", 22, encode_msgs(msgs), 7)]
    assert b.feed.frames == [("#Dev", 22, encode_msgs(msgs), 0)]  # skip: the sender's node's
    stream = redis_server.client().xrange(
        keys.log_keys(keys.room_channel(a.rooms._state.room_blind("#dev")))[0]
    )
    sizes = [len(v) for _, fields in stream for v in fields.values()]
    assert max(sizes) < len(encode_msgs(msgs)), (sizes, len(encode_msgs(msgs)))
    apart = (Msg(30, "alice", "#Dev", "one", now), Msg(31, "alice", "#Dev", "two", now + 1))
    verdict = Answer()
    a.rooms.post("alice", "#Dev", apart, encode_msgs(apart), 7, verdict)
    assert verdict.wait() is None
    assert wait_until(lambda: len(b.feed.frames) == 2)
    assert b.feed.frames[1] == ("#Dev", 31, encode_msgs(apart), 0)


def test_a_rooms_post_that_does_not_decode_is_logged_and_the_next_one_is_taken(
    nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes
    assert a.ask("alice", RoomCreate(1, "#bad", "")) is None
    channel = keys.room_channel(a.rooms._state.room_blind("#bad"))
    box = Box(KEY, load_cipher())
    room_log = bus.Log(a.link, channel, 200)
    now = time.time()
    good = crossing.post("node-x", "#bad", 0, (Msg(50, "alice", "#bad", "ok", now),))
    assert good is not None
    bad = [
        crossing.POST + b"\xc1",
        crossing.POST + good[1:-4],  # cut short
        crossing.POST + msgspec.msgpack.encode(["n", "#bad", "alice", 0, now, 0, ["x"]]),
        crossing.POST + msgspec.msgpack.encode(["n", "#bad", "alice", -1, now, 5, ["x"]]),
        crossing.POST + msgspec.msgpack.encode(["n", "#bad", "alice", 0, -5.0, 5, ["x"]]),
        crossing.POST + msgspec.msgpack.encode(["n", "bad", "alice", 0, now, 5, ["x"]]),
    ]
    with caplog.at_level(logging.ERROR, logger="chat.server.cluster"):
        for plain in [*bad, good]:
            room_log.publish(a.link.client, box.seal(channel.encode(), plain))
        assert wait_until(lambda: len(b.feed.frames) == 1 and len(a.feed.frames) == 1)
        time.sleep(0.2)
    assert (
        a.feed.frames
        == b.feed.frames
        == [("#bad", 50, encode_msgs((Msg(50, "alice", "#bad", "ok", now),)), 0)]
    )
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # Once per item and node (both read the shard), and both go on.
    assert len(said) == 2 * len(bad) and all("do not decode" in m for m in said), said
