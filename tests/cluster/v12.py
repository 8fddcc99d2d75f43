"""A v1.2 session for the cluster tests: raw frames (tests/wire.py), the contract's words.

A `Session` logs in asking for features, keeps every frame that is not a
roster frame in arrival order (roster frames are acked on the way), and lets
a test wait for a frame, ask a request and read what came since.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conftest import ServerProc
from e2e.server_support import PASSWORD

ALL = ("rooms", "read", "echo", "typing")
Frame = dict[str, Any]


class Session:
    def __init__(
        self,
        node: ServerProc,
        name: str,
        register: bool = False,
        features: tuple[str, ...] = ALL,
    ) -> None:
        self.name = name
        self.c = node.client()
        self.inbox: list[Frame] = []
        self.c.send(
            {
                "type": "auth",
                "user": name,
                "password": PASSWORD,
                "register": register,
                "features": list(features),
            }
        )
        ok = self.c.recv()
        assert ok["type"] == "auth_ok", ok
        self.granted = ok.get("features", [])
        roster = self.c.recv()
        assert roster["type"] == "roster" and roster["full"] is True, roster
        self.roster = set(roster["users"])
        self.c.send({"type": "roster_ack", "seq": roster["seq"]})
        self.rooms: Frame | None = self.expect("rooms") if "rooms" in features else None
        self.markers: Frame | None = self.expect("markers") if "read" in features else None
        assert self.ask({"type": "ping"}) == {"type": "pong"}

    # ---- reading ------------------------------------------------------------------------
    def _next(self, timeout: float) -> Frame:
        while True:
            f = self.c.recv(max(timeout, 0.01))
            if f["type"] == "roster":
                self.c.send({"type": "roster_ack", "seq": f["seq"]})
                continue
            return f

    def pump(self, seconds: float) -> None:
        """Read whatever comes within `seconds` into the inbox."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.inbox.append(self._next(left))
            except TimeoutError:
                return

    def expect(self, kind: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """The first frame of `kind` (with `fields`), from the inbox or the wire; the frames
        before it stay in the inbox."""

        def match(f: Frame) -> bool:
            return f["type"] == kind and all(f.get(k) == v for k, v in fields.items())

        for i, f in enumerate(self.inbox):
            if match(f):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            f = self._next(deadline - time.monotonic())
            if match(f):
                return f
            self.inbox.append(f)

    def wait_for(self, kind: str, timeout: float = 5.0, **fields: Any) -> None:
        """Read until a frame of `kind` (with `fields`) is in the inbox; it stays there."""
        found = self.expect(kind, timeout, **fields)
        self.inbox.append(found)

    def ask(self, obj: Frame, timeout: float = 5.0) -> Frame:
        """Send a request; its answer (the frame echoing its id, or the pong)."""
        self.c.send(obj)
        if obj["type"] == "ping":
            return self.expect("pong", timeout)
        deadline = time.monotonic() + timeout
        for i, f in enumerate(self.inbox):
            if f.get("id") == obj["id"] and f["type"] in ANSWERS:
                return self.inbox.pop(i)
        while True:
            f = self._next(deadline - time.monotonic())
            if f.get("id") == obj["id"] and f["type"] in ANSWERS:
                return f
            self.inbox.append(f)

    def sync(self) -> None:
        """Everything the server sent before now is in the inbox."""
        self.c.send({"type": "ping"})
        self.expect("pong")

    def take(self, kind: str | None = None) -> list[Frame]:
        """The inbox's frames (of `kind`), removed from it."""
        taken = [f for f in self.inbox if kind is None or f["type"] == kind]
        self.inbox = [f for f in self.inbox if not (kind is None or f["type"] == kind)]
        return taken

    def close(self) -> None:
        self.c.send({"type": "bye"})
        self.c.expect_closed()


ANSWERS = frozenset({"ok", "error", "sent", "room_list", "users", "history"})


def ok(frame: Frame) -> None:
    assert frame["type"] == "ok", frame


def err(frame: Frame, code: str) -> None:
    assert frame["type"] == "error" and frame["code"] == code, frame


def room_items(frames: list[Frame], room: str) -> list[tuple[str, ...]]:
    """A room's events and messages as comparable items, in the order they came."""
    out: list[tuple[str, ...]] = []
    for f in frames:
        if f["type"] == "room_event" and f["room"].lower() == room.lower():
            out.append(("event", f["event"], f["user"]))
        elif f["type"] == "msg" and isinstance(f["to"], str) and f["to"].lower() == room.lower():
            out.append(("msg", f["from"], f["text"]))
    return out


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()
