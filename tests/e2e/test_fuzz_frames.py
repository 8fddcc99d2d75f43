"""Random frames of every client type against one real server: nothing wedges, nothing dies.

One server runs for the module, with its log in a file. Each example sends a
burst of frames on a logged-in connection (every frame type of v1, v1.1 and
the v1.2 requests, each field either valid-shaped or anything JSON can hold:
huge, negative, bool, null and float numbers, long, empty and non-ASCII
strings, lists, objects; fields missing, extra fields; now and then a frame
that is not a frame at all), then a `ping`, and checks:

- the answer order rules (v1.1 section 7): the answers are the answers to the
  frames in the order sent, each frame with the answer its type allows (an
  `id` echoed exactly when it is a valid id, docs/protocol.md section 3a); the
  `pong` comes after all of them; a fatal error or the server's `bye` is the
  last frame, and the connection is closed after it (the next example logs in
  again);
- no "Traceback" and no ERROR line in the server's log;
- the server still answers a `ping` on a fresh connection, and delivers a
  message between two other users, one of them offline (so the store's writer
  is alive: its `sent` lists the offline user as queued).

The generator is a table with one entry per frame type and one strategy per
field (`KINDS`): a new frame type is one line. The v1.2 requests are answered
`bad_request` (unknown type) today; the expectations allow what v1.2 answers
them with once they exist, so the table need not change when they land.

Deterministic for CI: `derandomize=True` (the examples are a function of the
test's code), no example database, and no shrinking: every example runs on the
same server, so a replay is not the same experiment, and the first failing
burst is reported as it was sent. The frames of the issue that found the bugs
(`ISSUE_FRAMES`) run first, whatever the generator draws. Bounded:
`FUZZ_EXAMPLES` examples (about 15 s on a quiet 2-core machine), each answer
awaited at most `READ_TIMEOUT` (a wedged connection fails in seconds, not at the
idle timeout), and a per-example deadline.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import select
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from conftest import ServerProc, launch
from e2e.server_support import next_frame, register
from wire import Closed, WireClient, frame

MAX_ID = 2**53 - 1  # docs/protocol.md section 3a: every id and counter is within it
ID_TEXT_MAX = 128
FUZZ_EXAMPLES = 500
READ_TIMEOUT = 4.0  # a live server answers in milliseconds; silence this long is a wedge
FATAL = frozenset({"bad_frame", "frame_too_large", "server_full", "too_many_attempts", "timeout"})
FATAL_V12 = FATAL | {"banned"}
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"

FUZZER, OFFLINE, SENDER, RECEIVER = "fz", "offbox", "wa", "wb"


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------
edge_ints = st.sampled_from(
    [0, 1, -1, 199, 200, 201, MAX_ID, MAX_ID + 1, -MAX_ID, -MAX_ID - 1, 2**31, 2**63 - 1]
)
edge_ints |= st.sampled_from([2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30)])
any_ints = edge_ints | st.integers()
any_strings = st.one_of(
    st.text(max_size=40),
    st.text(min_size=120, max_size=300),
    st.sampled_from(["", "*", "#", "x" * 4096, "x" * 4097, "é" * 129, "\U0001f600" * 33]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    any_ints,
    st.floats(allow_nan=False, allow_infinity=False),  # NaN is not JSON: a frame-level case
    any_strings,
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)

names = st.sampled_from([FUZZER, OFFLINE, RECEIVER, "nobody"]) | st.from_regex(
    NAME_RE, fullmatch=True
)
rooms = st.from_regex(r"#" + NAME_RE, fullmatch=True)
peers = st.just("*") | names
ids = st.text(max_size=ID_TEXT_MAX) | st.integers(min_value=-MAX_ID, max_value=MAX_ID) | edge_ints
msg_ids = st.integers(min_value=-MAX_ID, max_value=MAX_ID) | edge_ints
texts = st.text(min_size=1, max_size=200) | st.sampled_from(["x" * 4096])
#: Never the fuzzer's real password (32 random hex digits): `passwd` and
#: `delete_account` always fail, whatever they draw.
passwords = st.text(min_size=1, max_size=40)


# --------------------------------------------------------------------------------------
# What answers a frame (in CHAT, with no v1.2 feature granted)
# --------------------------------------------------------------------------------------
Ends = Literal["never", "may", "always"]


@dataclass(frozen=True)
class Expect:
    """The answers one frame may get: how many, which ones, and whether one ends the line."""

    counts: tuple[int, ...]
    accept: Callable[[dict[str, Any]], bool]
    ends: Ends = "never"


def valid_id(value: Any) -> bool:
    """A client's id the server echoes (docs/protocol.md section 3a)."""
    if type(value) is str:
        return len(value) <= ID_TEXT_MAX
    return type(value) is int and -MAX_ID <= value <= MAX_ID


def echoes(obj: dict[str, Any], answer: dict[str, Any]) -> bool:
    """The answer carries the frame's id exactly when that id is valid, and unchanged."""
    if "id" in obj and valid_id(obj["id"]):
        sent = obj["id"]
        return "id" in answer and answer["id"] == sent and type(answer["id"]) is type(sent)
    return "id" not in answer


def error(answer: dict[str, Any], fatal: frozenset[str] = frozenset()) -> bool:
    return (
        answer.get("type") == "error"
        and isinstance(answer.get("message"), str)
        and (answer.get("code") in fatal if fatal else answer.get("code") not in FATAL_V12)
    )


def pong(obj: dict[str, Any]) -> Expect:
    return Expect((1,), lambda a: a == {"type": "pong"})


def goodbye(obj: dict[str, Any]) -> Expect:
    return Expect(
        (1,), lambda a: a.get("type") == "bye" and isinstance(a.get("reason"), str), "always"
    )


def refused(obj: dict[str, Any]) -> Expect:
    """Always a non-fatal error without an id (`auth` once logged in, `roster_ack` with
    nothing in flight: the fuzzer's roster never changes)."""
    return Expect((1,), lambda a: error(a) and "id" not in a)


def offline_ack(obj: dict[str, Any]) -> Expect:
    upto = obj.get("upto")
    if type(upto) is int and -MAX_ID <= upto <= MAX_ID:
        return Expect((0,), lambda a: False)
    return Expect((1,), lambda a: error(a) and "id" not in a)


def request(*answers: str, may_end: bool = False) -> Callable[[dict[str, Any]], Expect]:
    """A frame with an `id`: one answer of these types (or an error), echoing a valid id."""

    def expect(obj: dict[str, Any]) -> Expect:
        def accept(a: dict[str, Any]) -> bool:
            final = may_end and error(a, FATAL_V12)
            return echoes(obj, a) and (a.get("type") in answers or error(a) or final)

        return Expect((1,), accept, "may" if may_end else "never")

    return expect


def notice(obj: dict[str, Any]) -> Expect:
    """v1.2 `read`, `typing`: no answer when valid, else an error (maybe with the id)."""
    return Expect((0, 1), lambda a: error(a) and ("id" not in a or echoes(obj, a)))


def unknown(obj: dict[str, Any]) -> Expect:
    return Expect((1,), lambda a: error(a) and a["code"] == "bad_request" and echoes(obj, a))


def not_a_frame(code: str) -> Callable[[dict[str, Any]], Expect]:
    return lambda obj: Expect(
        (1,), lambda a: error(a, frozenset({code})) and "id" not in a, "always"
    )


@dataclass(frozen=True)
class Kind:
    """One client frame type: how it is answered, and a valid-shaped strategy per field."""

    expect: Callable[[dict[str, Any]], Expect]
    fields: dict[str, st.SearchStrategy[Any]]


bools = st.booleans()
seqs = st.integers(min_value=1, max_value=MAX_ID) | edge_ints
uptos = st.integers(min_value=-MAX_ID, max_value=MAX_ID) | edge_ints
limits = st.integers(min_value=1, max_value=200) | edge_ints
to = st.just("*") | st.lists(names, min_size=1, max_size=4)
topics = st.text(max_size=300)
typing_to = names | rooms | st.lists(names, min_size=1, max_size=3)
typing_states = st.sampled_from(["active", "paused", "done"])
ok = request("ok")
ok_or_end = request("ok", may_end=True)  # `too_many_attempts` may follow bad passwords

#: Every client frame type, with a strategy per field ("name?" marks an optional field).
KINDS: dict[str, Kind] = {
    # protocol v1
    "auth": Kind(refused, {"user": names, "password": passwords, "register?": bools}),
    "roster_ack": Kind(refused, {"seq": seqs}),
    "send": Kind(request("sent"), {"id": ids, "to": to, "text": texts}),
    "ping": Kind(pong, {}),
    "bye": Kind(goodbye, {}),
    # protocol v1.1
    "history": Kind(
        request("history"), {"id": ids, "with": peers, "before?": msg_ids, "limit?": limits}
    ),
    "offline_ack": Kind(offline_ack, {"upto": uptos}),
    # protocol v1.2 (shared/protocol-v1.2.md): requests with an id, then notices without
    "room_create": Kind(ok, {"id": ids, "room": rooms, "topic?": topics, "invite_only?": bools}),
    "join": Kind(ok, {"id": ids, "room": rooms}),
    "leave": Kind(ok, {"id": ids, "room": rooms}),
    "invite": Kind(ok, {"id": ids, "room": rooms, "user": names}),
    "kick": Kind(ok, {"id": ids, "room": rooms, "user": names}),
    "topic": Kind(ok, {"id": ids, "room": rooms, "topic": topics}),
    "room_list": Kind(request("room_list"), {"id": ids}),
    "passwd": Kind(
        ok_or_end, {"id": ids, "old": passwords, "new": passwords, "logout_others?": bools}
    ),
    "delete_account": Kind(ok_or_end, {"id": ids, "password": passwords}),
    "user_search": Kind(request("users"), {"id": ids, "prefix": st.text(max_size=32)}),
    "read": Kind(notice, {"with": peers | rooms, "upto": msg_ids}),
    "typing": Kind(notice, {"to": typing_to, "state": typing_states}),
}

#: Payloads that are not a frame the server can read: each is fatal, with its code.
NOT_FRAMES: list[tuple[bytes, str]] = [
    (b"\x00\x00\x00\x00", "bad_frame"),  # zero length
    (frame(b"[]"), "bad_frame"),
    (frame(b'"ping"'), "bad_frame"),
    (frame(b"null"), "bad_frame"),
    (frame(b"{}"), "bad_frame"),  # no type
    (frame(b'{"typ":"ping"}'), "bad_frame"),
    (frame(b"\xff\xfe{}"), "bad_frame"),  # not UTF-8
    (frame(b'{"type":"ping"'), "bad_frame"),  # not JSON
    (frame(b'{"type":"ping","x":NaN}'), "bad_frame"),
    (frame(b'{"type":"ping","x":' + b"9" * 5000 + b"}"), "bad_frame"),  # no number that big
    (struct.pack(">I", 65537), "frame_too_large"),  # the header alone decides
]


@dataclass
class Frame:
    """One frame of a burst: its bytes, its object (for the expectation) and the expectation."""

    data: bytes
    obj: dict[str, Any]
    expect: Expect = field(repr=False)

    def __repr__(self) -> str:
        return repr(self.obj) if self.obj else repr(self.data[:60])


@st.composite
def frames_of(draw: st.DrawFn, kind_name: str) -> Frame:
    kind = KINDS[kind_name]
    obj: dict[str, Any] = {"type": kind_name}
    valid_shape = draw(st.sampled_from([True, True, False]))  # as sent by a client, mostly
    for spec, values in kind.fields.items():
        key = spec.rstrip("?")
        how = "valid" if valid_shape else draw(st.sampled_from(["valid", "junk", "missing"]))
        if valid_shape and spec.endswith("?") and draw(st.booleans()):
            continue
        if how == "missing":
            continue
        obj[key] = draw(values if how == "valid" else junk)
    extra = st.text(max_size=8).filter(lambda k: k not in obj and k != "type")
    obj |= draw(st.dictionaries(extra, junk, max_size=2))
    return sized(Frame(frame(obj), obj, kind.expect(obj)))


def sized(f: Frame) -> Frame:
    """A frame over the server's `--max-frame` (65536, the default) is refused from its header."""
    if len(f.data) - 4 > 65536:
        return Frame(f.data, f.obj, not_a_frame("frame_too_large")(f.obj))
    return f


@st.composite
def odd_types(draw: st.DrawFn) -> Frame:
    """A frame whose `type` is no type at all: another JSON value, or an unknown name."""
    kind = draw(scalars.filter(lambda v: v not in KINDS) | st.lists(st.integers(), max_size=2))
    obj = {"type": kind} | draw(st.fixed_dictionaries({}, optional={"id": ids | junk}))
    return sized(Frame(frame(obj), obj, unknown(obj)))


@st.composite
def not_frames(draw: st.DrawFn) -> Frame:
    data, code = draw(st.sampled_from(NOT_FRAMES))
    return Frame(data, {}, not_a_frame(code)({}))


ODD: dict[str, st.SearchStrategy[Frame]] = {"~type": odd_types(), "~frame": not_frames()}
#: Every frame type, an odd type and a non-frame, each as likely as the others, and
#: the requests that reach the store (`send`, `history`, `offline_ack`) twice as
#: likely: `bye` and non-frames end a burst, the rest is what carries numbers inward.
STORED = ["send", "history", "offline_ack"]
MIX = [*STORED, *(k for k in KINDS if k not in {*STORED, "bye"}), "~type", "bye", "~frame"]
MIX += STORED
any_frame = st.sampled_from(MIX).flatmap(lambda k: ODD[k] if k in ODD else frames_of(k))
bursts = st.lists(any_frame, min_size=1, max_size=8)


# --------------------------------------------------------------------------------------
# Matching answers to frames
# --------------------------------------------------------------------------------------
def is_final(answer: dict[str, Any]) -> bool:
    return answer.get("type") == "bye" or error(answer, FATAL_V12)


def answers_fit(expects: list[Expect], answers: list[dict[str, Any]], closed: bool) -> bool:
    """The answers are, in order, one allowed answer per frame (or none where allowed),
    a final one (fatal error, `bye`) only last and only on a closed connection."""

    def fits(i: int, j: int) -> bool:
        if j == len(answers):
            return not closed and all(0 in e.counts for e in expects[i:])
        if i == len(expects):
            return False
        e = expects[i]
        if 0 in e.counts and fits(i + 1, j):
            return True
        if 1 not in e.counts or not e.accept(answers[j]):
            return False
        if is_final(answers[j]):
            return e.ends != "never" and j == len(answers) - 1 and closed
        return e.ends != "always" and fits(i + 1, j + 1)

    return fits(0, 0)


# --------------------------------------------------------------------------------------
# The server, the users, and the checks after each example
# --------------------------------------------------------------------------------------
@dataclass
class Arena:
    server: ServerProc
    password: str
    fuzzer: WireClient | None = None
    sender: WireClient | None = None
    receiver: WireClient | None = None
    log_at: int = 0
    probes: int = 0
    logins: int = 0
    slowest: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)

    def fuzz_connection(self) -> WireClient:
        if self.fuzzer is None:
            self.fuzzer = self.server.client()
            self.fuzzer.login(FUZZER, self.password, register=False)
            self.logins += 1
        return self.fuzzer

    def drop_fuzzer(self) -> None:
        if self.fuzzer is not None:
            self.fuzzer.close()
            self.server.clients.remove(self.fuzzer)
            self.fuzzer = None

    def new_log(self) -> str:
        with self.server.log_path.open("rb") as f:
            f.seek(self.log_at)
            data = f.read()
        self.log_at += len(data)
        return data.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    server = launch(tmp_path_factory.mktemp("fuzz"))
    password = secrets.token_hex(16)
    try:
        register(server, FUZZER, OFFLINE, password=password)
        sender, receiver = server.client(), server.client()
        sender.login(SENDER, password)
        receiver.login(RECEIVER, password)
        yield Arena(server, password, sender=sender, receiver=receiver)
    finally:
        for c in server.clients:
            c.close()
        server.stop()


def read_answers(client: WireClient, pongs: int) -> tuple[list[dict[str, Any]], bool]:
    """Every frame up to the last `pong` (the connection lives) or the close."""
    answers: list[dict[str, Any]] = []
    while True:
        try:
            answer = client.recv(READ_TIMEOUT)
        except Closed:
            return answers, True
        answers.append(answer)
        if answer == {"type": "pong"}:
            pongs -= 1
            if pongs == 0:
                return answers, False


def nothing_pending(client: WireClient) -> bool:
    if client._buf:
        return False
    return not select.select([client.sock], [], [], 0)[0]


def first_frame(client: WireClient, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first frame `want` takes; messages from the fuzzer on the way are skipped."""
    while True:
        f = next_frame(client, READ_TIMEOUT)
        if want(f):
            return f
        assert f["type"] == "msg" and f["from"] == FUZZER, f


def server_still_serves(arena: Arena) -> None:
    fresh = arena.server.client()
    fresh.send({"type": "ping"})
    assert fresh.recv(READ_TIMEOUT) == {"type": "pong"}
    fresh.close()
    arena.server.clients.remove(fresh)
    arena.probes += 1
    text, probe_id = f"probe {arena.probes}", f"p{arena.probes}"
    assert arena.sender is not None and arena.receiver is not None
    arena.sender.send({"type": "send", "id": probe_id, "to": [RECEIVER, OFFLINE], "text": text})
    got = first_frame(arena.receiver, lambda f: f["type"] == "msg" and f["text"] == text)
    assert got["from"] == SENDER, got
    sent = first_frame(arena.sender, lambda f: f["type"] != "msg")
    assert sent == {
        "type": "sent",
        "id": probe_id,
        "delivered": [RECEIVER],
        "missing": [OFFLINE],
        "queued": [OFFLINE],
    } | ({"msg_id": sent["msg_id"]} if "msg_id" in sent else {}), sent


def log_is_clean(arena: Arena) -> None:
    new = arena.new_log()
    assert "Traceback" not in new, new[-4000:]
    bad = [line for line in new.splitlines() if re.match(r"\S+ \S+ (ERROR|CRITICAL) ", line)]
    assert not bad, bad


def run_burst(arena: Arena, burst: list[Frame]) -> None:
    """One example. A failure drops the fuzzing connection, so the next example (or
    Hypothesis' replay of this one) starts on a fresh one; a silence is a wedge, said so."""
    started, stage = time.monotonic(), "the burst's answers"
    try:
        client = arena.fuzz_connection()
        # Closed while we wrote (a fatal frame early in the burst): read what came.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send_raw(b"".join(f.data for f in burst) + frame({"type": "ping"}))
        pings = sum(f.obj.get("type") == "ping" for f in burst)
        answers, closed = read_answers(client, pings + 1)
        if closed:
            arena.drop_fuzzer()
        else:
            assert nothing_pending(client), "a frame came after the pong"
        expects = [f.expect for f in burst] + [pong({})]
        assert answers_fit(expects, answers, closed), (
            f"frames {burst!r} were answered {answers!r} (closed: {closed})"
        )
        for a in answers:
            key = a["type"] if a["type"] != "error" else f"error:{a['code']}"
            arena.answers[key] = arena.answers.get(key, 0) + 1
        stage = "the log"
        log_is_clean(arena)
        stage = "a ping on a fresh connection, and a message between two other users"
        server_still_serves(arena)
    except Exception as exc:
        arena.drop_fuzzer()
        if isinstance(exc, TimeoutError):
            raise AssertionError(f"no answer in {READ_TIMEOUT} s ({stage}) after {burst}") from exc
        raise
    arena.slowest = max(arena.slowest, time.monotonic() - started)


def made(*objs: dict[str, Any]) -> list[Frame]:
    """A burst written by hand (the explicit examples): each frame's expectation from KINDS."""
    return [sized(Frame(frame(o), o, KINDS[o["type"]].expect(o))) for o in objs]


def refused_with(msg_id: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda a: error(a) and a["code"] == "bad_request" and a.get("id") == msg_id


#: The issue's frames, tried first on every run whatever the generator draws (the
#: generic expectation of `history` takes a page or an error: these say which).
LIMIT_NULL = {"type": "history", "id": "h", "with": "*", "limit": None}
ISSUE_FRAMES = [
    made(
        {"type": "offline_ack", "upto": -(10**30)},
        {"type": "send", "id": 1, "to": [OFFLINE], "text": "q"},
    ),
    made({"type": "history", "id": "h", "with": "*", "before": -(2**63) - 1}),
    [Frame(frame(LIMIT_NULL), LIMIT_NULL, Expect((1,), refused_with("h")))],
]


def test_random_frames_of_every_type_never_wedge_the_server(arena: Arena) -> None:
    """Examples are generated, not shrunk: the server is shared by every example, so a
    replay is not the same experiment; the first failing burst is reported as it was."""
    started = time.monotonic()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=10),
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    @given(bursts)
    def one_burst(burst: list[Frame]) -> None:
        run_burst(arena, burst)

    for burst in ISSUE_FRAMES:
        one_burst = example(burst)(one_burst)
    one_burst()
    took = time.monotonic() - started
    # What the run exercised, so a generator that stopped reaching a path shows.
    print(
        f"fuzz: {FUZZ_EXAMPLES} bursts in {took:.1f} s (slowest {arena.slowest:.2f} s),"
        f" {arena.logins} logins, answers {dict(sorted(arena.answers.items()))}"
    )
    assert arena.answers.get("sent", 0) > 0 and arena.answers.get("history", 0) > 0
    assert arena.answers.get("error:bad_frame", 0) > 0 and arena.answers.get("bye", 0) > 0
    # A thread that dies prints its traceback on stderr, not in the log: stop and look.
    server = arena.server
    for c in server.clients:
        c.close()
    server.clients.clear()
    assert server.stop() == 0
    assert server.proc.stderr is not None
    stderr = server.proc.stderr.read().decode("utf-8", "replace")
    assert "Traceback" not in stderr and "Traceback" not in server.log(), stderr[-4000:]
