"""Helpers for the protocol v1.2 end-to-end tests: they know the contract, not our code.

A `Session` is one logged-in connection that asked for v1.2 features. It keeps
every frame the server sends it, in order (`seen`), acks roster deltas on the
way, and lets a test take the frames it expects out of its `inbox` by what
they are (an answer by its `id`, a room event by its room), leaving the rest
for later checks such as "nothing of that feature ever reached it".

`sync()` sends a `ping` and waits for its `pong`: frames on one connection are
handled in order, so what the server had queued for this session before it
handled the ping is in the inbox once the pong is read. After an actor's answer
(`ok`, `sent`, or the actor's own `pong` after a `read`/`typing`), a sync of
another session therefore shows everything the action sent it.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from conftest import ServerProc, launch
from e2e.server_support import PASSWORD, assert_error
from wire import Closed, WireClient, frame

Frame = dict[str, Any]

#: Every v1.2 feature a server alone grants (`resume`, section 6, is not asked here).
ALL: tuple[str, ...] = ("rooms", "read", "echo", "typing")
#: Server frames that belong to a v1.2 feature (sections 2, 3 and 5).
FEATURE_FRAMES = frozenset({"rooms", "markers", "room_event", "read", "typing", "room_list"})

_names = itertools.count(1)


def uniq(prefix: str) -> str:
    """A user name no other test of the module uses (servers are shared within a module)."""
    return f"{prefix}{next(_names)}"


def uniq_room(prefix: str = "r") -> str:
    return "#" + uniq(prefix)


class Session:
    def __init__(self, client: WireClient, name: str, auth_ok: Frame) -> None:
        self.c = client
        self.name = name
        self.auth_ok = auth_ok
        #: Every frame received after the full roster, in order (roster deltas included).
        self.seen: list[Frame] = []
        #: Frames received and not yet taken by the test (roster deltas are not kept here).
        self.inbox: list[Frame] = []
        #: The frames that came between the first roster_ack and the pong of the login.
        self.login_frames: list[Frame] = []
        self._ids = itertools.count(1)

    @property
    def features(self) -> list[str]:
        return list(self.auth_ok.get("features", []))

    def login_frame(self, kind: str) -> Frame:
        found = [f for f in self.login_frames if f["type"] == kind]
        assert len(found) == 1, (kind, self.login_frames)
        return found[0]

    # ---- sending -------------------------------------------------------------------------------
    def send(self, obj: Frame) -> None:
        self.c.send(obj)

    def new_id(self) -> str:
        return f"{self.name}-q{next(self._ids)}"

    # ---- receiving -----------------------------------------------------------------------------
    def pump(self, timeout: float) -> Frame:
        """Read one frame into the inbox (a roster delta is acked and kept aside)."""
        f = self.c.recv(timeout)
        self.seen.append(f)
        if f["type"] == "roster" and f.get("full") is False:
            self.c.send({"type": "roster_ack", "seq": f["seq"]})
        else:
            self.inbox.append(f)
        return f

    def take(self, pred: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        """The first frame (already received or still to come) for which `pred` holds."""
        deadline = time.monotonic() + timeout
        at = 0
        while True:
            for i in range(at, len(self.inbox)):
                if pred(self.inbox[i]):
                    return self.inbox.pop(i)
            at = len(self.inbox)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no matching frame in {timeout}s: {self.inbox}")
            try:
                self.pump(left)
            except TimeoutError:
                continue

    def answer(self, rid: Any, timeout: float = 5.0) -> Frame:
        """The frame that answers the request with id `rid` (not a `msg`: those carry ids too)."""
        return self.take(lambda f: f.get("id") == rid and f["type"] != "msg", timeout)

    def ask(self, obj: Frame, timeout: float = 5.0) -> Frame:
        """Send a request (an id is added when it has none) and return its answer."""
        if "id" not in obj:
            obj = {**obj, "id": self.new_id()}
        self.send(obj)
        return self.answer(obj["id"], timeout)

    def ok(self, obj: Frame) -> Frame:
        rid = obj.get("id", self.new_id())
        answer = self.ask({**obj, "id": rid})
        assert answer == {"type": "ok", "id": rid}, (obj, answer)
        return answer

    def refused(self, obj: Frame, code: str) -> Frame:
        rid = obj.get("id", self.new_id())
        answer = self.ask({**obj, "id": rid})
        assert_error(answer, code, rid)
        return answer

    def pipeline(self, objs: Sequence[Frame], timeout: float = 30.0) -> list[Frame]:
        """Send every request in one write; their answers, in the order of the requests.
        (Ids must be strings: a `msg` carries an int id.)"""
        objs = [o if "id" in o else {**o, "id": self.new_id()} for o in objs]
        want = {o["id"] for o in objs}
        assert len(want) == len(objs) and all(isinstance(i, str) for i in want)
        self.c.send_raw(b"".join(frame(o) for o in objs))
        got: dict[str, Frame] = {}

        def answers(f: Frame) -> bool:
            return f["type"] != "msg" and f.get("id") in want and f["id"] not in got

        keep = []
        for f in self.inbox:
            if answers(f):
                got[f["id"]] = f
            else:
                keep.append(f)
        self.inbox = keep
        deadline = time.monotonic() + timeout
        while len(got) < len(want):
            f = self.pump(max(deadline - time.monotonic(), 0.01))
            if answers(f):
                self.inbox.pop()
                got[f["id"]] = f
        return [got[o["id"]] for o in objs]

    def sync(self, timeout: float = 10.0) -> None:
        """Ping and wait for the pong: what was queued for us before it is in the inbox."""
        self.send({"type": "ping"})
        self.take(lambda f: f["type"] == "pong", timeout)

    def drain(self) -> list[Frame]:
        """Everything received up to a sync, taken out of the inbox."""
        self.sync()
        out, self.inbox = self.inbox, []
        return out

    def msgs(self, count: int, timeout: float = 10.0) -> list[Frame]:
        deadline = time.monotonic() + timeout
        return [
            self.take(lambda f: f["type"] == "msg", max(deadline - time.monotonic(), 0.01))
            for _ in range(count)
        ]

    def event(self, room: str, event: str, timeout: float = 5.0) -> Frame:
        return self.take(
            lambda f: f["type"] == "room_event" and f["room"] == room and f["event"] == event,
            timeout,
        )

    def close(self) -> None:
        self.c.close()


def login(
    server: ServerProc,
    name: str,
    features: Iterable[str] | None = ALL,
    register: bool = True,
    password: str = PASSWORD,
) -> Session:
    """A session of `name` in CHAT that asked for `features` (None: no `features` field, a
    v1.1 client). Its `login_frames` hold what came after the first roster_ack, up to the
    pong of a ping sent right after it; `rooms` and `markers` are taken out of the inbox."""
    c = server.client()
    auth: Frame = {"type": "auth", "user": name, "password": password, "register": register}
    if features is not None:
        auth["features"] = list(features)
    c.send(auth)
    ok = c.recv()
    assert ok["type"] == "auth_ok" and ok["user"] == name, ok
    roster = c.recv()
    assert roster["type"] == "roster" and roster["full"] is True, roster
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    s = Session(c, name, ok)
    s.sync()
    s.login_frames = list(s.inbox)
    s.inbox = [f for f in s.inbox if f["type"] not in ("rooms", "markers")]
    return s


def register_all(server: ServerProc, names: Iterable[str], password: str = PASSWORD) -> None:
    """Register accounts fast: every auth on its own connection, all sent before any answer."""
    clients: list[tuple[str, WireClient]] = []
    for name in names:
        c = WireClient(server.host, server.port)
        c.send({"type": "auth", "user": name, "password": password, "register": True})
        clients.append((name, c))
    for name, c in clients:
        ok = c.recv(20)
        assert ok == {"type": "auth_ok", "user": name}, ok
        c.close()


def room_key(f: Frame) -> tuple[Any, ...]:
    """What identifies a room frame in a sequence: a message by id, an event by its fields."""
    if f["type"] == "msg":
        return ("msg", f["id"])
    return ("event", f["event"], f["user"], f.get("by"), f.get("topic"))


def of_room(frames: Iterable[Frame], room: str) -> list[Frame]:
    """The messages and events of `room`, in the order received."""
    return [
        f
        for f in frames
        if (f["type"] == "msg" and f["to"] == room)
        or (f["type"] == "room_event" and f["room"] == room)
    ]


def data_files(folder: Path) -> list[Path]:
    """Every file the server keeps in its folder (its logs are not data)."""
    return [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".log")]


def in_clear(folder: Path, words: Iterable[str]) -> list[tuple[str, str]]:
    """(file, word) for every word found in clear in a data file of the folder."""
    found = []
    for path in data_files(folder):
        data = path.read_bytes()
        for word in words:
            if word.encode() in data:
                found.append((path.name, word))
    return found


def module_server(folder: Path, *extra: str) -> Iterator[ServerProc]:
    """A server shared by the tests of one module (each test uses names of its own)."""
    server = launch(folder, *extra)
    try:
        yield server
    finally:
        for c in server.clients:
            c.close()
        server.stop(signal.SIGKILL)


def restart(server: ServerProc, start: Callable[..., ServerProc], *extra: str) -> ServerProc:
    """Stop the server with SIGTERM (it must exit 0) and start it again on the same files."""
    for c in server.clients:
        c.close()
    assert server.stop(signal.SIGTERM) == 0, server.log()
    return start(*extra)


def gone(client: WireClient, timeout: float = 5.0) -> bool:
    try:
        client.recv(timeout)
    except Closed:
        return True
    return False


def closing(server: ServerProc) -> Iterator[ServerProc]:
    """The shared server for one test; the connections the test opened are closed after it."""
    before = len(server.clients)
    yield server
    for c in server.clients[before:]:
        c.close()
    del server.clients[before:]


def check_event(ev: Frame, room: str, event: str, user: str, **extra: Any) -> None:
    """A `room_event` with exactly the contract's fields: `by`/`topic` only where it says."""
    assert set(ev) == {"type", "room", "event", "user", "ts", *extra}, ev
    assert (ev["type"], ev["room"], ev["event"], ev["user"]) == (
        "room_event",
        room,
        event,
        user,
    ), ev
    assert isinstance(ev["ts"], (int, float)) and not isinstance(ev["ts"], bool), ev
    assert abs(ev["ts"] - time.time()) < 60, ev
    for key, value in extra.items():
        assert ev[key] == value, (key, ev)


def room_entry(listing: Frame, room: str) -> Frame | None:
    """The entry of `room` in a `room_list` answer (None when not listed)."""
    found = [e for e in listing["rooms"] if e["room"] == room]
    assert len(found) <= 1, listing
    return found[0] if found else None
