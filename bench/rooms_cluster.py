#!/usr/bin/env python3
"""A room of 50 members over three nodes: messages/s, and what a room message adds to latency.

    python bench/rooms_cluster.py --reps 3 --out bench/results/rooms-cluster-YYYYMMDD.jsonl

A private `redis-server` (no persistence, as the tests run it) and three
`chat-server --cluster` nodes on it; 50 members (features `rooms`), member i on
node i % 3, all in one room. Two parts, each run for the room and, as the
reference, for `"*"` (the 50 are the only users online, so `"*"` reaches the same
49 others):

  sat  S senders (spread over the nodes) keep W messages each in flight for T
       seconds: messages/s is `sent` frames per second, deliveries/s the `msg`
       frames every member read per second.
  lat  one sender (node 0) at R messages/s for L seconds, each message carrying
       its send time: per receiver the time from the send to the `msg` (members
       on the sender's node and on the others apart), and the sender's `sent`.

The nodes run on core 1 (so three nodes share one core: the figures are what
the design costs, not what three machines would do), Redis and this client on
core 0; every hop is loopback. The client reads with one thread (selectors),
which is part of every figure alike.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.keyfile import load_or_create_key

STATE = run.STATE / "rooms-cluster"
NODE_CPU, AUX_CPU = "1", "0"
PASSWORD = "bench-password"
ROOM = "#bench"
_HEAD = struct.Struct(">I")


def frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return _HEAD.pack(len(data)) + data


class Member:
    """One member's connection: a raw socket and what it has read but not yet cut."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.node = 0

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(frame(obj))

    def frames(self) -> list[bytes]:
        """Whole frames in the buffer (payloads), cut off it."""
        out, buf, at = [], self.buf, 0
        while len(buf) - at >= 4:
            (n,) = _HEAD.unpack_from(buf, at)
            if len(buf) - at - 4 < n:
                break
            out.append(buf[at + 4 : at + 4 + n])
            at += 4 + n
        self.buf = buf[at:]
        return out

    def recv_one(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.frames()
            if got:
                self.buf = b"".join(_HEAD.pack(len(f)) + f for f in got[1:]) + self.buf
                obj = json.loads(got[0])
                if obj["type"] == "roster" and not obj.get("full"):
                    self.send({"type": "roster_ack", "seq": obj["seq"]})
                    continue
                return obj
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{self.name}: closed")
            self.buf += chunk

    def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        while True:
            obj = self.recv_one()
            if obj["type"] == kind and all(obj.get(k) == v for k, v in fields.items()):
                return obj


def login(m: Member) -> None:
    m.send({"type": "auth", "user": m.name, "password": PASSWORD, "features": ["rooms"]})
    assert m.recv_one()["type"] == "auth_ok"
    roster = m.recv_one()
    m.send({"type": "roster_ack", "seq": roster["seq"]})
    m.until("rooms")


def node(port: int, redis_port: int) -> subprocess.Popen[bytes]:
    cmd = [
        "taskset", "-c", NODE_CPU,
        sys.executable, "-m", "chat.server",
        "--host", "127.0.0.1", "--port", str(port),
        "--cluster", f"redis://127.0.0.1:{redis_port}/0",
        "--data-dir", str(STATE), "--hash-cost", "10", "--log-level", "WARNING",
        "--rate-limit", "0", "--idle-timeout", "0", "--ack-timeout", "600",
    ]  # fmt: skip
    log = open(STATE / f"node-{port}.log", "wb")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=run.raise_nofile)
    run.wait_port(port, proc)
    return proc


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def saturate(
    members: list[Member], to: str, senders: int, window: int, seconds: float
) -> dict[str, Any]:
    """S senders, W in flight each, T seconds: sents and msg frames per second."""
    sel = selectors.DefaultSelector()
    for m in members:
        m.sock.setblocking(False)
        sel.register(m.sock, selectors.EVENT_READ, m)
    chosen = [members[i * len(members) // senders] for i in range(senders)]
    count = dict.fromkeys((m.name for m in chosen), 0)
    sent = msgs = refused = 0
    seq = 0
    started = time.perf_counter()
    end = started + seconds

    def fire(m: Member) -> None:
        nonlocal seq
        seq += 1
        m.sock.setblocking(True)
        m.send({"type": "send", "id": seq, "to": to, "text": f"s{seq} load"})
        m.sock.setblocking(False)

    for m in chosen:
        for _ in range(window):
            fire(m)
    inflight = senders * window
    senders_set = set(chosen)
    marker = b'{"type":"msg"'
    while inflight or time.perf_counter() < end:
        for key, _ in sel.select(0.5):
            m: Member = key.data
            try:
                chunk = m.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if m not in senders_set:  # only receives: frames counted, never decoded
                data, at = m.buf + chunk, 0
                size, counting = len(data), time.perf_counter() <= end
                while size - at >= 4:
                    (length,) = _HEAD.unpack_from(data, at)
                    if size - at - 4 < length:
                        break
                    if counting and data.startswith(marker, at + 4):
                        msgs += 1
                    at += 4 + length
                m.buf = data[at:]
                continue
            m.buf += chunk
            for payload in m.frames():
                if payload.startswith(marker):
                    if time.perf_counter() <= end:
                        msgs += 1
                    continue
                kind = json.loads(payload)["type"]
                if kind in ("sent", "error"):
                    inflight -= 1
                    if kind == "sent":
                        if time.perf_counter() <= end:
                            sent += 1
                            count[m.name] += 1
                    else:
                        refused += 1
                    if time.perf_counter() < end:
                        fire(m)
                        inflight += 1
        if time.perf_counter() > end + 30:
            raise RuntimeError("senders' answers did not come back")
    elapsed = seconds
    drain(members, sel)
    sel.close()
    for m in members:
        m.sock.setblocking(True)
    return {
        "to": "room" if to.startswith("#") else "everyone",
        "msgs_per_s": round(sent / elapsed, 1),
        "deliveries_per_s": round(msgs / elapsed, 1),
        "refused": refused,
        "senders": senders,
        "window": window,
    }


def drain(members: list[Member], sel: selectors.BaseSelector) -> None:
    """Read what is still coming (the tail of a burst) and forget it."""
    quiet_since = time.perf_counter()
    while time.perf_counter() - quiet_since < 0.5:
        for key, _ in sel.select(0.1):
            m: Member = key.data
            try:
                m.buf += m.sock.recv(1 << 18)
                quiet_since = time.perf_counter()
            except BlockingIOError:
                pass
            for payload in m.frames():
                if payload.startswith(b'{"type":"roster"'):
                    m.sock.setblocking(True)
                    m.send({"type": "roster_ack", "seq": json.loads(payload)["seq"]})
                    m.sock.setblocking(False)


def latency(members: list[Member], to: str, rate: float, seconds: float) -> dict[str, Any]:
    """One sender on node 0 at `rate`; the time from each send to each `msg` and `sent`."""
    sender = members[0]
    sel = selectors.DefaultSelector()
    for m in members:
        m.sock.setblocking(False)
        sel.register(m.sock, selectors.EVENT_READ, m)
    same: list[float] = []
    other: list[float] = []
    sents: list[float] = []
    sent_at: dict[int, float] = {}
    step, n = 1.0 / rate, 0
    started = time.perf_counter()
    next_send = started
    end = started + seconds
    while time.perf_counter() < end + 1.0:
        now = time.perf_counter()
        if now >= next_send and now < end:
            n += 1
            sent_at[n] = time.perf_counter()
            sender.sock.setblocking(True)
            sender.send({"type": "send", "id": n, "to": to, "text": f"{n}"})
            sender.sock.setblocking(False)
            next_send += step
        for key, _ in sel.select(max(0.0, min(next_send - time.perf_counter(), 0.01))):
            m: Member = key.data
            try:
                m.buf += m.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            at = time.perf_counter()
            for payload in m.frames():
                obj = json.loads(payload)
                if obj["type"] == "msg":
                    took = at - sent_at[int(obj["text"])]
                    (same if m.node == sender.node else other).append(took)
                elif obj["type"] == "sent" and m is sender:
                    sents.append(at - sent_at[obj["id"]])
                elif obj["type"] == "roster":
                    m.sock.setblocking(True)
                    m.send({"type": "roster_ack", "seq": obj["seq"]})
                    m.sock.setblocking(False)
    sel.close()
    for m in members:
        m.sock.setblocking(True)

    def ms(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3) if xs else -1.0

    expected = n * (len(members) - 1)
    return {
        "to": "room" if to.startswith("#") else "everyone",
        "sent_msgs": n,
        "delivered": len(same) + len(other),
        "expected": expected,
        "same_node_p50_ms": ms(same, 0.5),
        "same_node_p99_ms": ms(same, 0.99),
        "other_nodes_p50_ms": ms(other, 0.5),
        "other_nodes_p99_ms": ms(other, 0.99),
        "all_mean_ms": round(statistics.fmean(same + other) * 1000, 3) if same + other else -1,
        "sent_p50_ms": ms(sents, 0.5),
        "sent_p99_ms": ms(sents, 0.99),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--senders", type=int, default=6)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--lat-seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    opts = ap.parse_args()
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True, mode=0o700)
    run.raise_nofile()
    os.sched_setaffinity(0, {int(AUX_CPU)})
    redis_port = run.free_port()
    redis_proc = subprocess.Popen(
        ["taskset", "-c", AUX_CPU, "redis-server", "--port", str(redis_port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(STATE)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        r = redis.Redis(port=redis_port)
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        key, _ = load_or_create_key(STATE / "server.key")
        names = [f"m{i:02d}" for i in range(opts.members)]
        link = Link(f"redis://127.0.0.1:{redis_port}/0")
        RedisAccounts(link, Box(key, load_cipher()), 10).register_many((n, PASSWORD) for n in names)
        ports = [run.free_port() for _ in range(3)]
        procs = [node(p, redis_port) for p in ports]
        members = []
        for i, name in enumerate(names):
            m = Member(name, ports[i % 3])
            m.node = i % 3
            login(m)
            members.append(m)
        members[0].send({"type": "room_create", "id": "c", "room": ROOM})
        members[0].until("ok", id="c")
        for m in members[1:]:
            m.send({"type": "join", "id": "j", "room": ROOM})
            m.until("ok", id="j")
        for m in members[:-1]:  # every member heard the last join: the room is whole everywhere
            m.until("room_event", event="joined", user=members[-1].name)
        redis_pid = int(r.info("server")["process_id"])
        hz = os.sysconf("SC_CLK_TCK")
        for rep in range(opts.reps):
            for to in (ROOM, "*"):
                before = [ticks(p.pid) for p in procs] + [ticks(redis_pid)]
                row = saturate(members, to, opts.senders, opts.window, opts.seconds)
                after = [ticks(p.pid) for p in procs] + [ticks(redis_pid)]
                spent = [(a - b) / hz for a, b in zip(after, before, strict=True)]
                row.update(
                    part="sat",
                    rep=rep,
                    members=opts.members,
                    nodes_cpu_s=round(sum(spent[:-1]), 2),
                    redis_cpu_s=round(spent[-1], 2),
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
            for to in (ROOM, "*"):
                row = latency(members, to, opts.rate, opts.lat_seconds)
                row.update(part="lat", rep=rep, members=opts.members, rate=opts.rate)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(15)
        redis_proc.send_signal(signal.SIGTERM)
        redis_proc.wait(15)
    if opts.out is not None:
        with opts.out.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
