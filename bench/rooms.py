#!/usr/bin/env python3
"""Rooms on a server alone (issue 19, "Speed and memory"): four parts, side by side.

    python bench/rooms.py --parts sat,idle,login,big --reps 3 \\
        --out bench/results/rooms-20261207.jsonl

  sat    run.py's saturation scenario at C = 200 (closed loop, W = 8, S = C, quick-ACK
         clients), taking turns in each repetition: ngIRCd with the 200 in one channel,
         chat-server to `"*"` (exactly run.py's), chat-server with the 200 in one room
         writing to the room (`loadgen --room #bench`).
  idle   RSS per idle logged-in connection (run.py's idle method), N clients, without
         features and with `rooms,read,echo,typing` granted, taking turns.
  login  200 users, 200 rooms, every user a member of every room (200 x 200), 1,200
         messages per room (240,000); a third of the users have read everything, a
         third are behind by a random 0..1,000 in each room, a third never read anything
         (no marker: 1,000+ unread in each room, the contract's cap). Each user logs in
         on its own (nobody else online): time from `auth` to `markers` (and to
         `auth_ok`, `rooms` on the way). A fresh server process per repetition.
  big    1,000 rooms of 10 members (2,000 users in 5 rooms each: 10,000 members in
         all), 1,000 messages per room (1,000,000): the server's start (spawn to
         listening), its RSS (against the same users and no messages), then from 20
         logged-in members 200 `room_list` and 200 `history` pages (50 messages: 100
         rooms' newest, then one before a random id of the same room) each timed on
         the wire (request sent to the answer's last byte read), three rounds (600 of
         each), RSS after each round.

The data of `login` and `big` is made once (kept in bench/.state/rooms-*/) by driving
a real chat-server over loopback with this script's own client (the users themselves
are created in the users file with the server's `UserStore.register_many`, as run.py
does): rooms created and joined with `room_create`/`join`, every message a `send` to
its room, every marker a `read`. Servers pinned to core 1, clients to core 0, as run.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run  # noqa: E402

PASSWORD = "bench-password"
_HEAD = struct.Struct(">I")
TEXT = "x" * 100
V12 = "rooms,read,echo,typing"


def frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return _HEAD.pack(len(data)) + data


class Client:
    """One blocking connection: frames out, frames in (payloads, decoded on demand)."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, *objs: dict[str, Any]) -> None:
        self.sock.sendall(b"".join(frame(o) for o in objs))

    def raw(self, timeout: float = 30.0) -> bytes:
        """The next frame's payload."""
        while True:
            if len(self.buf) >= 4:
                (n,) = _HEAD.unpack_from(self.buf)
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4 : 4 + n])
                    del self.buf[: 4 + n]
                    return payload
            self.sock.settimeout(timeout)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"{self.name}: closed by the server")
            self.buf += chunk

    def answer(self, kind: str) -> bytes:
        """The payload of the next `kind` frame (roster deltas acknowledged on the way,
        other frames skipped)."""
        mark = f'"type":"{kind}"'.encode()
        while True:
            payload = self.raw()
            if mark in payload[:40]:
                return payload
            obj = json.loads(payload)
            if obj["type"] == "roster" and not obj.get("full"):
                self.send({"type": "roster_ack", "seq": obj["seq"]})

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        obj = json.loads(self.raw(timeout))
        if obj["type"] == "roster" and not obj.get("full"):
            self.send({"type": "roster_ack", "seq": obj["seq"]})
        return obj

    def until(self, kind: str) -> dict[str, Any]:
        while True:
            obj = self.next()
            if obj["type"] == kind:
                return obj
            if obj["type"] == "error":
                raise RuntimeError(f"{self.name}: {obj}")

    def login(self, features: str = V12) -> dict[str, float | dict[str, Any]]:
        """auth .. CHAT; the times (from sending auth) of auth_ok, rooms, markers."""
        want = [f for f in features.split(",") if f]
        t0 = time.perf_counter()
        self.send({"type": "auth", "user": self.name, "password": PASSWORD, "features": want})
        got: dict[str, Any] = {}
        while True:
            obj = self.next()
            kind = obj["type"]
            t = time.perf_counter() - t0
            if kind == "auth_ok":
                got["auth_ok"] = t
            elif kind == "roster" and obj.get("full"):
                self.send({"type": "roster_ack", "seq": obj["seq"]})
            elif kind == "rooms":
                got["rooms"], got["rooms_frame"] = t, obj
            elif kind == "markers":
                got["markers"], got["markers_frame"] = t, obj
            elif kind == "error":
                raise RuntimeError(f"{self.name}: {obj}")
            done_rooms = "rooms" in got or "rooms" not in want
            if done_rooms and ("markers" in got or "read" not in want) and "auth_ok" in got:
                return got

    def sync(self) -> None:
        """Everything sent before is handled (a `ping`'s `pong` comes after it)."""
        self.send({"type": "ping"})
        self.until("pong")

    def close(self) -> None:
        self.sock.close()


def name(i: int) -> str:
    return f"b{i:05d}"


def pct(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of them at or below it."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """What else ran: the load average and the busiest other processes (noise)."""
    ps = subprocess.run(
        ["ps", "-eo", "pcpu,etime,comm,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:6]
    return {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "top": [p[:160] for p in ps]}


# ---- a server on kept data -----------------------------------------------------------------
class Kept:
    """A chat-server process on a data folder of its own (users, key, history kept)."""

    def __init__(self, folder: Path, exe: str, extra: list[str] | None = None) -> None:
        self.folder = folder
        self.exe = exe
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.start_s = 0.0

    @property
    def history(self) -> Path:
        return self.folder / "history.db"

    def start(self, new_store: bool = False, history: Path | None = None) -> Kept:
        target = run.Target("rooms", 4, self.exe, self.folder, store=False)
        self.port = run.free_port()
        cmd = run.chat_server_cmd(target, self.port, 12000)
        at = cmd.index("--no-history")
        store = ["--history-file", str(history or self.history)]
        if new_store:
            store += run._new_store_option(self.exe)
        cmd[at : at + 1] = store
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the process writes it
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", run.SERVER_CPU, *cmd, *self.extra],
            stdout=log,
            stderr=log,
            preexec_fn=run.raise_nofile,
        )
        # Serving, not only listening: the listeners are bound before the store opens
        # (a connect succeeds into the backlog meanwhile), so the start ends with the
        # first login answered (b00000, a few ms of it the login itself).
        deadline = t0 + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.folder}")
            try:
                probe = Client(self.port, name(0))
                try:
                    probe.sock.settimeout(5)
                    probe.login("")
                finally:
                    probe.close()
                break
            except (OSError, ConnectionError):
                if time.perf_counter() > deadline:
                    raise RuntimeError("server did not serve") from None
                time.sleep(0.002)
        self.start_s = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def fresh_folder(folder: Path, users: int, exe: str) -> None:
    """A data folder with `users` bench users and no history (made anew)."""
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    for p in folder.iterdir():
        if p.is_file():
            p.unlink()
    run.ensure_registered(users, folder, exe)


def send_many(c: Client, frames: list[dict[str, Any]], window: int = 256) -> list[dict[str, Any]]:
    """Send frames that are each answered (by id), `window` in flight; the answers."""
    answers: list[dict[str, Any]] = []
    at = 0
    while at < len(frames):
        chunk = frames[at : at + window]
        c.send(*chunk)
        at += len(chunk)
        while len(answers) < at:
            obj = c.next()
            if obj["type"] in ("sent", "ok", "error", "room_list", "history"):
                answers.append(obj)
    return answers


# ---- data: login (200 x 200) ---------------------------------------------------------------
LOGIN_USERS, LOGIN_ROOMS, LOGIN_MSGS = 200, 200, 1200


def room_name(r: int) -> str:
    return f"#r{r:04d}"


def build_login(folder: Path, exe: str, seed: int = 19) -> dict[str, Any]:
    rnd = random.Random(seed)
    fresh_folder(folder, LOGIN_USERS, exe)
    srv = Kept(folder, exe).start(new_store=True)
    t0 = time.perf_counter()
    try:
        for u in range(LOGIN_USERS):  # everyone in every room; one user online at a time
            c = Client(srv.port, name(u))
            c.login("rooms")
            kind = "room_create" if u == 0 else "join"
            reqs = [{"type": kind, "id": r, "room": room_name(r)} for r in range(LOGIN_ROOMS)]
            bad = [a for a in send_many(c, reqs) if a["type"] != "ok"]
            if bad:
                raise RuntimeError(f"{name(u)}: {bad[:3]}")
            c.close()
        ids: dict[int, list[int]] = {r: [] for r in range(LOGIN_ROOMS)}
        per_user = LOGIN_ROOMS * LOGIN_MSGS // LOGIN_USERS
        for u in range(LOGIN_USERS):  # each user writes its share, spread over the rooms
            c = Client(srv.port, name(u))
            c.login("rooms")
            rooms = [(u * per_user + k) % LOGIN_ROOMS for k in range(per_user)]
            reqs = [
                {"type": "send", "id": k, "to": room_name(r), "text": TEXT}
                for k, r in enumerate(rooms)
            ]
            for r, a in zip(rooms, send_many(c, reqs), strict=True):
                if a["type"] != "sent":
                    raise RuntimeError(f"{name(u)}: {a}")
                ids[r].append(a["msg_id"])
            c.close()
        third = LOGIN_USERS // 3
        for u in range(2 * third):  # markers: read-up, then behind by 0..1000
            c = Client(srv.port, name(u))
            c.login("rooms,read")
            reads = []
            for r in range(LOGIN_ROOMS):
                ordered = sorted(ids[r])
                behind = 0 if u < third else rnd.randint(0, 1000)
                reads.append({"type": "read", "with": room_name(r), "upto": ordered[-1 - behind]})
            c.send(*reads)
            c.sync()
            c.close()
    finally:
        srv.stop()
    return {"build_s": round(time.perf_counter() - t0, 1), "messages": LOGIN_ROOMS * LOGIN_MSGS}


def group_of(u: int) -> str:
    third = LOGIN_USERS // 3
    return "read-up" if u < third else "behind" if u < 2 * third else "never-read"


def measure_login(folder: Path, exe: str, rep: int, spy: Path | None = None) -> dict[str, Any]:
    """200 logins one after the other; with `spy`, py-spy records the server meanwhile
    (raw stacks of every thread, 250 Hz, on the clients' core)."""
    srv = Kept(folder, exe).start()
    rows = []
    spying = None
    try:
        pid = srv.proc.pid  # type: ignore[union-attr]
        time.sleep(0.5)
        if spy is not None:
            tool = str(Path(sys.executable).parent / "py-spy")
            cmd = ["taskset", "-c", run.LOADGEN_CPU, tool, "record", "-p", str(pid)]
            spying = subprocess.Popen(
                [*cmd, "-r", "250", "--format", "raw", "-o", str(spy), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        cpu0 = cpu_s(pid)
        for u in range(LOGIN_USERS):
            c = Client(srv.port, name(u))
            got = c.login(V12)
            marks = got["markers_frame"]["markers"]  # type: ignore[index]
            rooms = got["rooms_frame"]["rooms"]  # type: ignore[index]
            rows.append(
                {
                    "user": u,
                    "group": group_of(u),
                    "auth_ok_ms": got["auth_ok"] * 1e3,  # type: ignore[operator]
                    "rooms_ms": got["rooms"] * 1e3,  # type: ignore[operator]
                    "markers_ms": got["markers"] * 1e3,  # type: ignore[operator]
                    "rooms": len(rooms),
                    "conversations": len(marks),
                    "unread": sum(m["unread"] for m in marks),
                }
            )
            c.send({"type": "bye"})
            c.close()
        cpu = cpu_s(pid) - cpu0
        if spying is not None:
            spying.send_signal(signal.SIGINT)
            spying.wait(30)
    finally:
        srv.stop()
    out: dict[str, Any] = {"part": "login", "rep": rep, "server_cpu_s": round(cpu, 2)}
    for group in ("all", "read-up", "behind", "never-read"):
        sel = [r for r in rows if group == "all" or r["group"] == group]
        for key in ("auth_ok_ms", "rooms_ms", "markers_ms"):
            vals = [r[key] for r in sel]
            out[f"{group}_{key}_p50"] = round(statistics.median(vals), 2)
            out[f"{group}_{key}_p99"] = round(pct(vals, 99), 2)
            out[f"{group}_{key}_max"] = round(max(vals), 2)
        out[f"{group}_unread_mean"] = round(statistics.mean(r["unread"] for r in sel), 1)
    out["rooms_per_user"] = rows[0]["rooms"]
    out["conversations"] = max(r["conversations"] for r in rows)
    return out


# ---- data: big (1,000 rooms, 10,000 members, 1,000,000 messages) ------------------------------
BIG_USERS, BIG_ROOMS, BIG_PER_USER_ROOMS, BIG_MSGS = 2000, 1000, 5, 1000


def big_rooms_of(u: int) -> list[int]:
    return [(u * BIG_PER_USER_ROOMS + k) % BIG_ROOMS for k in range(BIG_PER_USER_ROOMS)]


def build_big(folder: Path, exe: str) -> dict[str, Any]:
    fresh_folder(folder, BIG_USERS, exe)
    srv = Kept(folder, exe).start(new_store=True)
    t0 = time.perf_counter()
    per_user = BIG_ROOMS * BIG_MSGS // BIG_USERS
    try:
        for u in range(BIG_USERS):  # users u .. u+199 share no room: one at a time anyway
            c = Client(srv.port, name(u))
            c.login("rooms")
            rooms = big_rooms_of(u)
            made = send_many(
                c, [{"type": "room_create", "id": r, "room": room_name(r)} for r in rooms]
            )
            joins = [
                {"type": "join", "id": a["id"], "room": room_name(a["id"])}
                for a in made
                if a["type"] == "error"
            ]
            bad = [a for a in send_many(c, joins) if a["type"] != "ok"]
            if bad:
                raise RuntimeError(f"{name(u)}: {bad[:3]}")
            c.close()
        for u in range(BIG_USERS):
            c = Client(srv.port, name(u))
            c.login("rooms")
            rooms = big_rooms_of(u)
            reqs = [
                {"type": "send", "id": k, "to": room_name(rooms[k % len(rooms)]), "text": TEXT}
                for k in range(per_user)
            ]
            bad = [a for a in send_many(c, reqs, 500) if a["type"] != "sent"]
            if bad:
                raise RuntimeError(f"{name(u)}: {bad[:3]}")
            c.close()
            if u % 200 == 199:
                print(f"  big: {(u + 1) * per_user} messages, {time.perf_counter() - t0:.0f} s")
    finally:
        srv.stop()
    return {"build_s": round(time.perf_counter() - t0, 1), "messages": BIG_USERS * per_user}


def measure_big(folder: Path, exe: str, rep: int, rnd: random.Random) -> dict[str, Any]:
    empty = folder / "history-empty.db"
    for extra in ("", "-wal", "-shm"):
        Path(str(empty) + extra).unlink(missing_ok=True)
    # The same users on an empty store: the RSS of a server that keeps no messages.
    srv = Kept(folder, exe).start(new_store=True, history=empty)
    try:
        time.sleep(1.0)
        rss_empty = rss_kb(srv.proc.pid)  # type: ignore[union-attr]
        start_empty = srv.start_s
    finally:
        srv.stop()
    # INFO: the server says why it closes a connection (a bench run that fails can be read)
    srv = Kept(folder, exe, ["--log-level", "INFO"]).start()
    out: dict[str, Any] = {"part": "big", "rep": rep, "start_s": round(srv.start_s, 3)}
    try:
        pid = srv.proc.pid  # type: ignore[union-attr]
        rss_start = rss_kb(pid)
        time.sleep(1.0)
        rss_1s = rss_kb(pid)
        clients = []
        newest_id = 0
        for u in rnd.sample(range(BIG_USERS), 20):
            c = Client(srv.port, name(u))
            got = c.login("rooms")
            lasts = [r["last"] for r in got["rooms_frame"]["rooms"]]  # type: ignore[index]
            newest_id = max(newest_id, *lasts)
            clients.append((c, u))
        # The build gave 1,000,000 consecutive ids, and every room has 100 messages within
        # the first 100,000 of them (its first member's): a page before any id past the
        # first 250,000 of the build is a full one.
        floor = newest_id - BIG_ROOMS * BIG_MSGS + 250_000
        rss_logged = rss_kb(pid)
        lists: list[float] = []
        pages: list[float] = []
        entries = set()
        rss_rounds = []
        for _round in range(3):  # the same 400 requests again: does RSS move?
            for i in range(200):
                c, u = clients[i % len(clients)]
                t = time.perf_counter()
                c.send({"type": "room_list", "id": i})
                payload = c.answer("room_list")
                lists.append((time.perf_counter() - t) * 1e3)
                obj = json.loads(payload)
                assert obj["type"] == "room_list", obj
                entries.add(len(obj["rooms"]))
            for i in range(100):  # the newest page of a room, then a page before a random id
                c, u = clients[i % len(clients)]
                room = room_name(rnd.choice(big_rooms_of(u)))
                newest = 0
                for before in (None, "random"):
                    req: dict[str, Any] = {"type": "history", "id": i, "with": room, "limit": 50}
                    if before:
                        req["before"] = rnd.randint(floor, newest)
                    t = time.perf_counter()
                    c.send(req)
                    payload = c.answer("history")
                    pages.append((time.perf_counter() - t) * 1e3)
                    obj = json.loads(payload)
                    assert obj["type"] == "history" and len(obj["messages"]) == 50, obj
                    newest = obj["messages"][-1]["id"]
            rss_rounds.append(rss_kb(pid))
        rss_end = rss_rounds[-1]
        for c, _ in clients:
            c.close()
    finally:
        srv.stop()
    out.update(
        start_empty_s=round(start_empty, 3),
        rss_empty_kb=rss_empty,
        rss_start_kb=rss_start,
        rss_1s_kb=rss_1s,
        rss_logged_20_kb=rss_logged,
        rss_end_kb=rss_end,
        rss_after_each_400_kb=rss_rounds,
        room_list_entries=sorted(entries),
        room_list_p50_ms=round(statistics.median(lists), 2),
        room_list_p99_ms=round(pct(lists, 99), 2),
        room_list_max_ms=round(max(lists), 2),
        history_p50_ms=round(statistics.median(pages), 2),
        history_p99_ms=round(pct(pages, 99), 2),
        history_max_ms=round(max(pages), 2),
        history_file_mb=round(Path(folder / "history.db").stat().st_size / 2**20, 1),
    )
    return out


# ---- main -----------------------------------------------------------------------------------
def write(out: Path, row: dict[str, Any]) -> None:
    row.setdefault("when", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    row.setdefault("machine", machine())
    row.setdefault("src_commit", run.server_version(run.EXE or run.default_exe()))
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    brief = {k: v for k, v in row.items() if k != "machine" and not k.endswith("_max")}
    print(f"[{time.strftime('%H:%M:%S')}] {json.dumps(brief)[:600]}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="sat,idle,login,big")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=200, help="sat: C")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--idle", type=int, default=10000, help="idle: N connections")
    ap.add_argument("--idle-reps", type=int, default=1)
    ap.add_argument("--rebuild", action="store_true", help="make the login/big data anew")
    ap.add_argument("--spy", type=Path, default=None, help="login: py-spy raw stacks to this file")
    ap.add_argument("--exe", default="")
    ap.add_argument("--out", type=Path, required=True)
    opts = ap.parse_args()
    exe = str(Path(opts.exe).absolute()) if opts.exe else run.default_exe()
    run.EXE = exe
    parts = opts.parts.split(",")
    subprocess.run(["make", "-s", "-C", str(run.LOADGEN.parent)], check=True)
    run.STATE.mkdir(mode=0o700, exist_ok=True)
    run.raise_nofile()
    opts.out.parent.mkdir(exist_ok=True)
    t = opts.threads
    star, room = run.Target(f"chat-t{t}", t, exe), run.Target(f"chat-room-t{t}", t, exe)
    plain, v12 = run.Target(f"chat-t{t}", t, exe), run.Target(f"chat-v12-t{t}", t, exe)
    if "sat" in parts or "idle" in parts:
        most = max(opts.clients, opts.idle if "idle" in parts else 0)
        run.ensure_registered(most, run.STATE, exe)
    c = str(opts.clients)
    sat = ["--mode", "window", "--clients", c, "--senders", c, "--window", "8", "--quickack"]
    sat += ["--login-batch", "10", "--duration", "5", "--warmup", "1"]
    for rep in range(1, opts.reps + 1):
        if "sat" in parts:
            run.one(opts.out, "sat", run.Target("ngircd"), rep, sat, 300)
            run.one(opts.out, "sat", star, rep, sat, 300)
            run.one(opts.out, "sat-room", room, rep, [*sat, "--room", "#bench"], 300)
    if "idle" in parts:
        idle = ["--mode", "idle", "--clients", str(opts.idle), "--hold", "3"]
        idle += ["--login-batch", "64", "--quickack", "--src-count", "8"]
        for rep in range(1, opts.idle_reps + 1):
            run.one(opts.out, "idle", plain, rep, idle, 3600)
            run.one(opts.out, "idle-v12", v12, rep, [*idle, "--features", V12], 3600)
    if "login" in parts:
        folder = run.STATE / "rooms-login"
        if opts.rebuild or not (folder / "built").exists():
            print("login: making 200 rooms x 200 members, 240,000 messages...", flush=True)
            info = build_login(folder, exe)
            (folder / "built").write_text(json.dumps(info))
            write(opts.out, {"part": "login-build", **info})
        for rep in range(1, opts.reps + 1):
            write(opts.out, measure_login(folder, exe, rep, opts.spy if rep == 1 else None))
    if "big" in parts:
        folder = run.STATE / "rooms-big"
        if opts.rebuild or not (folder / "built").exists():
            print("big: making 1,000 rooms, 10,000 members, 1,000,000 messages...", flush=True)
            info = build_big(folder, exe)
            (folder / "built").write_text(json.dumps(info))
            write(opts.out, {"part": "big-build", **info})
        rnd = random.Random(7)
        for rep in range(1, opts.reps + 1):
            write(opts.out, measure_big(folder, exe, rep, rnd))
    return 0


if __name__ == "__main__":
    os.chdir(BENCH.parent)
    sys.exit(main())
