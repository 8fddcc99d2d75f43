"""What crosses between nodes (cluster/crossing.py, issue 22 "cheaper crossings").

A `msg` or `echo` crosses as its parts and the receiving node rebuilds the
frames: the first part here runs the encoding alone (no Redis: what each
message group becomes, and every bound of the decoder); the second drives a
node's real broker over a real Redis (one instance and a Redis Cluster),
publishing payloads into its inbox as a node of another key or version, or a
bug, would: what does not decode is logged once and dropped, the subscriber
goes on, and format 1 (the version before) is still delivered; the third
compares, over real sockets, the bytes a recipient on the sender's node and
one on another node get for the same message: a private one, a group, `"*"`
and an echo.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import pytest

from chat.server.cluster import bus, crossing, keys
from chat.server.cluster.box import Box
from chat.server.cluster.broker import INBOX_KEEPS, RedisBroker
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.shared.fields import MAX_ID, TEXT_MAX
from chat.shared.messages import Msg, encode, encode_msgs
from conftest import ServerProc
from e2e.server_support import register

from .conftest import AnyRedis
from .v12 import Session

KEY = bytes(range(32))
TS = 1765000000.123456
_enc = msgspec.msgpack.encode


def made(sender: str, to: Any, *texts: str, first: int = 1, ts: float = TS) -> tuple[Msg, ...]:
    return tuple(Msg(first + i, sender, to, t, ts) for i, t in enumerate(texts))


def across(items: list[bytes]) -> list[crossing.Item]:
    """What a receiving node decodes of `items` packed into one payload."""
    body = crossing.payload(items)
    assert body[:1] == crossing.COMPACT
    return [crossing.item(raw) for raw in crossing.items(body[1:])]


# ---- the encoding alone --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("to", "names", "only"),
    [
        (("bob",), ("bob",), None),  # a pair: no names beside `to`
        (("bob", "carol", "dave"), ("bob", "carol", "dave"), None),
        (("bob", "carol", "dave"), ("carol",), [1]),
        (("alice", "bob", "dave"), ("bob", "dave"), [1, 2]),  # the sender is never one
        ("*", None, None),
    ],
)
def test_a_group_of_sends_crosses_as_one_item_and_comes_back_as_its_frames(
    to: Any, names: tuple[str, ...] | None, only: list[int] | None
) -> None:
    msgs = made("alice", to, 'h\u00e9 "q" \\ \u2028 \U0001f600', "", "x" * TEXT_MAX, first=41)
    items = crossing.msgs("alice", names, msgs)
    assert len(items) == 1
    (got,) = across(items)
    assert isinstance(got, crossing.Msgs)
    assert (got.sender, got.names, got.only, got.first) == ("alice", names, only, 41)
    assert got.frames() == encode_msgs(msgs) == b"".join(encode(m) for m in msgs)
    (echoed,) = across(crossing.echo("alice", msgs))
    assert isinstance(echoed, crossing.Echo) and echoed.frames() == encode_msgs(msgs)


def test_a_pairs_message_is_far_smaller_than_its_frame() -> None:
    """The bench's pair message (100 characters to one name): what crosses, against the
    frame and head that crossed before (issue 22: 2 x 220 B was that design's floor)."""
    msgs = made("b00001", ("b00002",), "x" * 100, first=123456)
    (item,) = crossing.msgs("b00001", ("b00002",), msgs)
    frame = encode_msgs(msgs)
    assert len(item) <= 140 and len(frame) >= 190, (len(item), len(frame))


def test_messages_that_share_no_run_cross_as_several_items_each_exact() -> None:
    odd = (
        Msg(5, "alice", ("bob",), "a", TS),
        Msg(6, "alice", ("bob",), "b", TS),
        Msg(9, "alice", ("bob",), "c", TS),  # an id skipped
        Msg(10, "alice", ("bob",), "d", TS + 1),  # another time
        Msg(11, "alice", ("bob", "carol"), "e", TS + 1),  # other recipients
    )
    items = crossing.msgs("alice", ("bob",), odd)
    assert len(items) == 4
    got = across(items)
    assert b"".join(g.frames() for g in got if isinstance(g, crossing.Msgs)) == encode_msgs(odd)
    assert [g.names for g in got if isinstance(g, crossing.Msgs)] == [("bob",)] * 4


@pytest.mark.parametrize(
    ("sender", "names", "msgs", "why"),
    [
        ("alice", ("bob",), made("carol", ("bob",), "x"), "another sender"),
        ("alice", None, made("alice", "#dev", "x"), "a room"),
        ("alice", ("bob",), made("alice", "*", "x"), "everyone"),
        ("alice", ("erin",), made("alice", ("bob",), "x"), "not among"),
    ],
)
def test_what_cannot_cross_as_asked_is_refused_at_the_sender(
    sender: str, names: Sequence[str] | None, msgs: tuple[Msg, ...], why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        crossing.msgs(sender, names, msgs)


GOOD = ["m", "alice", ["bob"], TS, 7, ["hi"]]
#: Items out of their bounds (each against GOOD) and what the decoder must say of it.
BAD: list[tuple[list[Any], str]] = [
    (["m", "alice", ["bob"], TS, 0, ["hi"]], ">= 1"),  # id 0
    (["m", "alice", ["bob"], TS, MAX_ID + 1, ["hi"]], f"<= {MAX_ID}"),
    (["m", "alice", ["bob"], TS, MAX_ID, ["a", "b"]], "past"),  # the last id past MAX_ID
    (["m", "alice", ["bob"], TS, -(2**63), ["hi"]], ">= 1"),
    (["m", "alice", ["bob"], -1.0, 7, ["hi"]], ">= 0.0"),
    (["m", "alice", ["bob"], 1e12, 7, ["hi"]], "<= 253402300799.0"),
    (["m", "alice", ["bob"], float("nan"), 7, ["hi"]], ""),
    (["m", "alice", ["bob"], TS, 7, []], "length >= 1"),  # no message
    (["m", "alice", ["bob"], TS, 7, ["x" * (TEXT_MAX + 1)]], f"length <= {TEXT_MAX}"),
    (["m", "", ["bob"], TS, 7, ["hi"]], "length >= 1"),  # no name
    (["m", "alice", ["bob", "x" * 33], TS, 7, ["hi"]], "length <= 32"),
    (["r", "al ice", "*", 5], "match"),  # not a name
    (["m", "alice", "#dev", TS, 7, ["hi"]], ""),  # a room is not an inbox's
    (["m", "alice", ["bob"], TS, 7, ["hi"], [1]], "index past"),
    (["m", "alice", ["bob"], TS, 7, ["hi"], [-1]], ">= 0"),
    (["m", "alice", "*", TS, 7, ["hi"], [0]], "everyone"),
    (["m", "alice", ["bob"], TS, "7", ["hi"]], "Expected `int`"),
    (["m", "alice", ["bob"], TS, 7], "at least length 6"),  # tag and 5 fields
    (["r", "alice", "*", -1], ">= 0"),
    (["r", "alice", "*", MAX_ID + 1], f"<= {MAX_ID}"),
    (["r", "alice", "", 5], "length >= 1"),
    (["t", "alice", ["bob"], "dev", b"{}"], "match"),  # a room without its '#'
    (["z", "alice"], "Invalid value 'z'"),
]


@pytest.mark.parametrize(("bad", "says"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_every_number_and_name_is_bounded_where_it_is_decoded(bad: list[Any], says: str) -> None:
    (raw,) = crossing.items(_enc([GOOD]))
    assert isinstance(crossing.item(raw), crossing.Msgs)  # the item it is made from is good
    (raw,) = crossing.items(_enc([bad]))
    with pytest.raises(msgspec.ValidationError, match=None if not says else _re(says)):
        crossing.item(raw)


@pytest.mark.parametrize("skip", [0, 7, 2**32, 2**64 - 1])  # a native handle is a uint64_t
def test_a_rooms_post_crosses_as_its_parts_with_any_connection_handle(skip: int) -> None:
    msgs = made("alice", "#Dev", "h\u00e9", "x" * TEXT_MAX, first=MAX_ID - 1)
    body = crossing.post("0123456789abcdef", "#Dev", skip, msgs)
    assert body is not None and body[:1] == crossing.POST
    got = crossing.posted(body[1:])
    assert (got.origin, got.room, got.sender, got.skip) == (
        "0123456789abcdef",
        "#Dev",
        "alice",
        skip,
    )
    assert (got.first, got.last, got.frames()) == (MAX_ID - 1, MAX_ID, encode_msgs(msgs))
    with pytest.raises(msgspec.ValidationError, match=">= 0"):
        crossing.posted(_enc(["n", "#Dev", "alice", -1, TS, 5, ["x"]]))
    with pytest.raises(OverflowError):  # msgpack holds no larger integer: nothing to check
        _enc(["n", "#Dev", "alice", crossing.SLOT_MAX + 1, TS, 5, ["x"]])


def test_a_body_that_is_not_a_bounded_array_does_not_decode() -> None:
    for body in (b"", b"\xc1", _enc({"m": 1}), _enc([1] * (crossing.ITEMS_MAX + 1))):
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
            crossing.items(body)


def _re(text: str) -> str:
    return re.escape(text)


# ---- a node's broker over a real Redis ------------------------------------------------------
class Inbox:
    """The core's side of a node's broker: what it was handed, in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.got: list[tuple[Any, ...]] = []

    def _note(self, *what: Any) -> None:
        with self._cond:
            self.got.append(what)
            self._cond.notify_all()

    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        self._note("msg", sender, None if names is None else tuple(names), frames)

    def delivered(self) -> None:
        pass

    def echo(self, sender: str, frames: bytes) -> None:
        self._note("echo", sender, frames)

    def read(self, user: str, peer: str, upto: int) -> None:
        self._note("read", user, peer, upto)

    def typing(self, sender: str, names: Sequence[str], room: str | None, frame: bytes) -> None:
        self._note("typing", sender, tuple(names), room, frame)

    def wait(self, n: int, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)


@pytest.fixture
def node_b(redis_server: AnyRedis) -> Iterator[tuple[Inbox, Callable[[bytes], None]]]:
    """Node b's broker, started, and a way to put a plain payload into its inbox sealed with
    the cluster's key, as another node's publisher does."""
    box = Box(KEY, load_cipher())
    b = RedisBroker(Link(redis_server.url), box, "node-b")
    inbox = Inbox()
    b.start(inbox)
    link = Link(redis_server.url)
    channel = keys.node_inbox("node-b")
    log = bus.Log(link, channel, INBOX_KEEPS, settles=True)

    def put(plain: bytes) -> None:
        _, took = log.publish(link.client, box.seal(channel.encode(), plain))
        assert int(took) == 1, "node b's subscriber did not take it"

    try:
        yield inbox, put
    finally:
        b.stop()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_payload_that_does_not_decode_is_logged_once_and_the_next_one_is_delivered(
    node_b: tuple[Inbox, Callable[[bytes], None]], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, put = node_b
    msgs = made("alice", ("bob",), "after")
    with caplog.at_level(logging.ERROR, logger="chat.server.cluster"):
        put(crossing.COMPACT + b"\xc1 not msgpack")
        put(crossing.COMPACT + _enc([GOOD] * 3)[:-2])  # cut short
        put(crossing.payload(crossing.msgs("alice", ("bob",), msgs)))
        assert inbox.wait(1) == [("msg", "alice", ("bob",), encode_msgs(msgs))]
    said = errors(caplog)
    assert len(said) == 2 and all("does not decode" in s for s in said), said


def test_items_out_of_bounds_are_dropped_each_and_the_others_delivered_in_order(
    node_b: tuple[Inbox, Callable[[bytes], None]], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, put = node_b
    first, last = made("alice", ("bob",), "first"), made("alice", "*", "last", first=9)
    items = [
        *crossing.msgs("alice", ("bob",), first),
        *[_enc(bad) for bad, _ in BAD],
        crossing.read("alice", "*", MAX_ID),
        *crossing.msgs("alice", None, last),
    ]
    with caplog.at_level(logging.ERROR, logger="chat.server.cluster"):
        put(crossing.payload(items))
        got = inbox.wait(3)
        time.sleep(0.2)  # nothing more comes
    assert (
        inbox.got
        == got
        == [
            ("msg", "alice", ("bob",), encode_msgs(first)),
            ("read", "alice", "*", MAX_ID),
            ("msg", "alice", None, encode_msgs(last)),
        ]
    )
    (said,) = errors(caplog)  # once for the payload, however many items
    assert f"{len(BAD)} of {len(items)} items" in said and "do not decode" in said, said


def test_a_payload_of_format_1_from_a_node_of_the_version_before_is_delivered(
    node_b: tuple[Inbox, Callable[[bytes], None]],
) -> None:
    """During an upgrade a node of the version before still writes format 1 (frames after a
    JSON head): an upgraded node delivers them as they came."""
    inbox, put = node_b
    frames = encode_msgs(made("alice", ("bob", "carol"), "from an older node"))
    heads = [
        (["m", "alice", ["bob"]], frames),
        (["e", "alice"], frames),
        (["r", "alice", None, "bob", 12], b""),
        (["t", "alice", ["bob"]], b"typing frame"),
    ]
    items = b""
    for head, tail in heads:
        encoded = json.dumps(head, separators=(",", ":")).encode()
        item = struct.pack(">I", len(encoded)) + encoded + tail
        items += struct.pack(">I", len(item)) + item
    put(b"\x01" + items)
    assert inbox.wait(4) == [
        ("msg", "alice", ("bob",), frames),
        ("echo", "alice", frames),
        ("read", "alice", "bob", 12),
        ("typing", "alice", ("bob",), None, b"typing frame"),
    ]


def test_a_payload_of_an_unknown_format_is_logged_and_dropped(
    node_b: tuple[Inbox, Callable[[bytes], None]], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, put = node_b
    msgs = made("alice", ("bob",), "after")
    with caplog.at_level(logging.ERROR, logger="chat.server.cluster"):
        put(b"\x07" + crossing.payload(crossing.msgs("alice", ("bob",), msgs)))
        put(crossing.payload(crossing.msgs("alice", ("bob",), msgs)))
        assert inbox.wait(1) == [("msg", "alice", ("bob",), encode_msgs(msgs))]
    (said,) = errors(caplog)
    assert "unknown format" in said and "dropped" in said, said


# ---- over real sockets: the same bytes here and there ------------------------------------------
def raw_msgs(s: Session, n: int, timeout: float = 5.0) -> list[bytes]:
    """The next `n` `msg` frames of a session, as bytes (length included): rosters are acked,
    other frames skipped."""
    assert not [f for f in s.inbox if f["type"] == "msg"], s.inbox
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        header = s.c._read(4, deadline - time.monotonic())
        payload = s.c._read(struct.unpack(">I", header)[0], deadline - time.monotonic())
        frame = json.loads(payload)
        if frame["type"] == "roster":
            s.c.send({"type": "roster_ack", "seq": frame["seq"]})
        elif frame["type"] == "msg":
            got.append(header + payload)
    return got


def test_a_recipient_on_another_node_gets_the_bytes_a_local_one_gets(
    redis_server: AnyRedis, start_node: Callable[..., ServerProc]
) -> None:
    """A private message, a group, `"*"` (each a group of three sends, in one write) and
    their echoes: every session that gets a message, on the sender's node or the other one,
    gets the same bytes (protocol v1.2 section 4: an echo is the same `msg` frame)."""
    a, b = start_node(redis_server.url), start_node(redis_server.url)
    register(a, "alice", "bob", "carol", "dave")
    # Node b's sessions first: node a hears of them in the order they came (one presence
    # channel), so once it has heard of carol it has heard of the other two.
    echo_there, bob_there, carol_there = Session(b, "alice"), Session(b, "bob"), Session(b, "carol")
    deadline = time.monotonic() + 10
    while "carol" not in (dave_here := Session(a, "dave")).roster:
        assert time.monotonic() < deadline, "node a never heard of node b's users"
        dave_here.close()
        time.sleep(0.1)
    sender, echo_here, bob_here = Session(a, "alice"), Session(a, "alice"), Session(a, "bob")
    everyone = [echo_here, echo_there, bob_here, bob_there, carol_there, dave_here]
    texts = ['pla\u00een "quoted" \\ \u2028', "\U0001f600" * 50, "x" * 100]
    cases: list[tuple[Any, list[Session]]] = [
        (["bob"], [echo_here, echo_there, bob_here, bob_there]),
        (["bob", "carol", "dave"], everyone),
        ("*", everyone),
    ]
    for to, getters in cases:
        sends = [{"type": "send", "id": i, "to": to, "text": t} for i, t in enumerate(texts)]
        sender.c.send_raw(b"".join(_frame(s) for s in sends))  # one group of sends
        got = {s: raw_msgs(s, len(texts)) for s in getters}
        here = got[echo_here]
        assert [json.loads(f[4:])["text"] for f in here] == texts
        assert all(json.loads(f[4:])["to"] == to for f in here)
        for s, frames in got.items():
            assert frames == here, (to, s.name)
        for s in [sender, *everyone]:
            s.sync()
            assert not s.take("msg"), (to, s.name)  # no copy more, none for others


def _frame(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


# ---- the publisher's round trips ----------------------------------------------------------------
def _script_calls(redis_server: AnyRedis) -> tuple[int, int]:
    """(SCRIPT EXISTS, EVALSHA) calls so far, every master together."""
    exists = evalsha = 0
    for client in redis_server.node_clients():
        stats = client.info("commandstats")
        exists += int(stats.get("cmdstat_script|exists", {}).get("calls", 0))
        evalsha += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return exists, evalsha


def test_a_publish_is_one_round_trip_and_a_flushed_script_loses_nothing(
    redis_server: AnyRedis,
) -> None:
    """The publisher's pipeline is sent as it is: redis-py's own pipeline would first ask
    `SCRIPT EXISTS` for its scripts, one more round trip on the path of every crossing. A
    Redis that lost its scripts (restarted, flushed) refuses the publish with NOSCRIPT: the
    script is loaded and the publish sent again, once: nothing lost, nothing twice, in
    order."""
    box = Box(KEY, load_cipher())
    a = RedisBroker(Link(redis_server.url), box, "node-a")
    b = RedisBroker(Link(redis_server.url), box, "node-b")
    inbox = Inbox()
    a.start(Inbox())
    b.start(inbox)
    taken: list[bool] = []
    lock = threading.Lock()

    def then(ok: bool) -> None:
        with lock:
            taken.append(ok)

    def publish(i: int) -> None:
        a.publish("node-b", "alice", ("bob",), made("alice", ("bob",), f"m{i}", first=i), then)

    try:
        publish(1)
        inbox.wait(1)
        exists0, evalsha0 = _script_calls(redis_server)
        for i in range(2, 32):
            publish(i)
        got = inbox.wait(31)
        exists1, evalsha1 = _script_calls(redis_server)
        assert exists1 == exists0, "the pipeline asked SCRIPT EXISTS"
        assert evalsha1 > evalsha0  # the publishes were counted where they ran
        for client in redis_server.node_clients():
            client.script_flush()
        for i in range(32, 42):
            publish(i)
        got = inbox.wait(41)
        time.sleep(0.2)  # nothing more comes
        assert inbox.got == got
        texts = [json.loads(frames[4:])["text"] for _, _, _, frames in got]
        assert texts == [f"m{i}" for i in range(1, 42)]
        with lock:
            assert taken == [True] * 41
    finally:
        a.stop()
        b.stop()
