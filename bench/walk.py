#!/usr/bin/env python3
"""The walk of one chat message: which modules it passes, and the calls between them.

Runs a real server in this process (a temporary data folder, a loopback port),
logs two users in over real sockets, then traces every Python call on every
thread (`sys.setprofile`, `threading.setprofile`) while one user sends one
message to the other, from the loop's read of the frame to the flush that
sends the `msg` (and the `sent`). Prints the modules in the order first
entered, how often each is entered from another module, and the calls that
cross a module boundary; the numbers quoted in docs/server.md ("The walk of
one message") and bench/README.md come from here.

    .venv/bin/python bench/walk.py            # the walk of a message to one person
    .venv/bin/python bench/walk.py --to '*'   # to everyone (three users online)

Only the project's modules count (`chat.*`); the standard library and cffi are
left out, except the native calls into libchatdispatch, which are listed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def _read(sock: socket.socket) -> dict[str, Any]:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return json.loads(body)


def _until(sock: socket.socket, kind: str) -> dict[str, Any]:
    while True:
        frame = _read(sock)
        if frame["type"] == "roster":
            sock.sendall(_frame({"type": "roster_ack", "seq": frame["seq"]}))
        if frame["type"] == kind:
            return frame


def _login(port: int, name: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_frame({"type": "auth", "user": name, "password": "pw", "register": True}))
    _until(sock, "auth_ok")
    roster = _read(sock)
    sock.sendall(_frame({"type": "roster_ack", "seq": roster["seq"]}))
    sock.sendall(_frame({"type": "ping"}))
    _until(sock, "pong")
    return sock


class Tracer:
    """Call events of `chat.*` functions on every thread while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.events: list[tuple[float, str, str, str, str]] = []  # t, thread, kind, caller, callee
        self.lock = threading.Lock()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if not self.armed:
            return
        if event == "call":
            callee = frame.f_globals.get("__name__", "")
            back = frame.f_back
            caller = back.f_globals.get("__name__", "") if back is not None else ""
            name = f"{callee}.{frame.f_code.co_qualname}"
        elif event == "c_call":
            mod = getattr(arg, "__module__", None) or ""
            name = getattr(arg, "__name__", "")
            if not name.startswith("cd_") and name not in ("recv", "send", "select", "poll"):
                return
            callee, caller = f"native:{name}", frame.f_globals.get("__name__", "")
            name = f"{mod}.{name}"
        else:
            return
        if not (callee.startswith("chat.") or callee.startswith("native:")):
            return
        with self.lock:
            self.events.append(
                (time.perf_counter(), threading.current_thread().name, event, caller, name)
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--to", default="bob", help="'bob' (one person) or '*' (everyone)")
    ap.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the checkout's src/ (another commit)"
    )
    opts = ap.parse_args()
    sys.path.insert(0, str(opts.src))
    try:  # the server's entry point, wherever this commit keeps it
        from chat.server.ops.cli import main as server_main
    except ImportError:
        from chat.server.cli import main as server_main  # type: ignore[no-redef]

    tracer = Tracer()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log_file = folder / "server.log"
        done: list[str] = []

        def drive() -> None:
            try:
                port = _port(log_file)
                alice, bob = _login(port, "alice"), _login(port, "bob")
                carol = _login(port, "carol") if opts.to == "*" else None
                time.sleep(0.3)
                to = "*" if opts.to == "*" else [opts.to]
                # A first message warms what the server caches per roster (who is online,
                # their slots) and answers the roster frames still in flight; the second
                # is the walk.
                alice.sendall(_frame({"type": "send", "id": 0, "to": to, "text": "warm"}))
                for s in (bob, carol):
                    if s is not None:
                        _until(s, "msg")
                _until(alice, "sent")
                time.sleep(0.3)
                tracer.armed = True
                alice.sendall(_frame({"type": "send", "id": 1, "to": to, "text": "hello"}))
                _until(bob, "msg")
                _until(alice, "sent")
                time.sleep(0.1)
                tracer.armed = False
                for s in (alice, bob, carol):
                    if s is not None:
                        s.close()
                done.append("ok")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=drive, name="driver", daemon=True).start()
        threading.setprofile(tracer)
        sys.setprofile(tracer)
        args = ["--host", "127.0.0.1", "--port", "0", "--hash-cost", "10", "--threads", "1"]
        args += ["--data-dir", str(folder), "--log-file", str(log_file)]
        server_main(args)
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    if not done:
        print("the message did not go through", file=sys.stderr)
        return 1
    _report(tracer.events)
    return 0


def _port(log_file: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if log_file.exists():
            m = re.search(r"listening on \S+ port (\d+)", log_file.read_text())
            if m:
                return int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("the server did not start")


def _segment(
    events: list[tuple[float, str, str, str, str]],
    first: str | tuple[str, ...],
    last: str,
    after: int = 0,
) -> tuple[list[tuple[float, str, str, str, str]], int]:
    """The events of one thread from the first call ending in `first` (one of them, when
    several) at or after index `after`, to the first call ending in `last` after it, and
    the index after it."""
    i = next(n for n in range(after, len(events)) if events[n][4].endswith(first))
    thread = events[i][1]
    j = next(
        n for n in range(i, len(events)) if events[n][1] == thread and events[n][4].endswith(last)
    )
    return [e for e in events[i : j + 1] if e[1] == thread], j + 1


def _module(name: str) -> str:
    if name.startswith("native:"):
        return "libchatdispatch"
    parts = name.split(".")
    # chat.server.core.hub.Hub.route -> chat.server.core.hub: the module is the longest
    # prefix that is a module; qualnames start with a capital or a lower-case function.
    for n in range(len(parts), 1, -1):
        candidate = ".".join(parts[:n])
        if candidate in sys.modules:
            return candidate
    return parts[0]


def _report(events: list[tuple[float, str, str, str, str]]) -> None:
    """The loop's part (the read of the frame to its post to the mailbox) and the worker's
    (the mailbox's run to the end of its tick), where the message goes from one to the other."""
    loop, after = _segment(events, ("._read", "._read_tcp"), "Mailbox.post")
    worker, _ = _segment(events, "Mailbox._run", "Tick.flush", after)
    walk = loop + worker
    order: dict[str, None] = {}
    entries: collections.Counter[str] = collections.Counter()
    crossings: list[tuple[str, str]] = []
    for _t, _thread, _kind, caller, name in walk:
        module = _module(name)
        order.setdefault(module, None)
        if caller != module and caller.startswith("chat."):
            entries[module] += 1
            crossings.append((caller, name))
    print(f"modules entered: {len(order)} (libchatdispatch counted as one), in order:")
    for m in order:
        print(f"  {m}  (entered from another module {entries[m]}x)")
    print(f"\ncalls across module boundaries: {len(crossings)}")
    for caller, name in crossings:
        print(f"  {caller} -> {name}")
    threads = [loop[0][1], worker[0][1]] if worker else [loop[0][1]]
    print(f"\nthreads: {' -> '.join(threads)} ({len(threads) - 1} hand-off)")


if __name__ == "__main__":
    sys.exit(main())
