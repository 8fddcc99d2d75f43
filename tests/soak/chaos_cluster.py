"""A chaos soak of the cluster: traffic and faults mixed, invariants checked from outside.

Each existing test of tests/cluster meets one fault alone; the bugs found last lived where
faults meet (a failover that left a node thinking Redis was down for good). This script
runs a Redis Cluster of three masters with a replica each, two or three real `chat-server`
nodes and a dozen users talking (privately, in rooms, to everyone), injects faults one at
a time from a seeded RNG (slots moved, a master killed or frozen, a node stopped, a user
reconnecting), then checks what the contract promises, over the users' own sockets only.

Not a pytest test (its name does not start with `test_`): a run takes minutes and its
faults are random; a violation it finds becomes a deterministic test in tests/cluster.
Run: `.venv/bin/python tests/soak/chaos_cluster.py --seconds 120 --seed 1` (tests/soak/
README.md). Exit 0 when no invariant broke, 1 otherwise; the records stay in the folder
printed at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import re
import select
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import redis  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from chat.server.cluster import keys  # noqa: E402
from cluster.conftest import REDIS, REDIS_CLI, RedisClusterProc, free_cluster_port  # noqa: E402
from cluster.v12 import Session  # noqa: E402
from conftest import ServerProc, launch  # noqa: E402
from e2e.server_support import register  # noqa: E402
from wire import Closed  # noqa: E402

Frame = dict[str, Any]

#: docs/cluster.md: a send whose recipients are on another node is answered within a
#: second (the crossing's deadline 0.5 s, the settle 0.3 s); room requests and room sends
#: have the same deadline (`rate_limited` after it).
DEADLINE = 1.0
#: A recipient whose session ended this soon after a `sent` may have left before the
#: frame reached it: judged by the history instead (v1.1 section 4).
GRACE = 3.0
#: Seconds of no traffic before the checks: what is on its way arrives.
QUIET = 5.0


def now() -> float:
    return time.monotonic()


# ---- the Redis Cluster ---------------------------------------------------------------------


class ChaosCluster(RedisClusterProc):
    """The fixtures' Redis Cluster, asked only through its live processes: the chaos kills
    and freezes some, and a replica refuses `CLUSTER SETSLOT`."""

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, **self._kw())

    def alive(self) -> list[int]:
        return [p for p, proc in zip(self.ports, self.procs, strict=True) if proc.poll() is None]

    def asked(self) -> list[int]:
        return self.alive()

    def slots(self) -> dict[int, int]:
        """Slot -> port of its master, asked of a live master."""
        for port in self.masters():
            with contextlib.suppress(redis.RedisError):
                out = {}
                for lo, hi, master, *_ in self.node_client(port).execute_command(
                    "CLUSTER", "SLOTS"
                ):
                    for s in range(lo, hi + 1):
                        out[s] = int(master[1])
                return out
        raise RuntimeError("no master answers CLUSTER SLOTS")

    def slot_owner(self, slot: int) -> int:
        return self.slots()[slot]

    def move_slot(self, slot: int, to_port: int, pause: float = 0.0) -> None:
        """As the fixture's, with `SETSLOT NODE` told to the masters only."""
        from_port = self.slot_owner(slot)
        if from_port == to_port:
            return
        src, dst = self.node_client(from_port), self.node_client(to_port)
        dst_id = self.node_id(to_port)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(from_port))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while names := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *names)
            time.sleep(pause)
        for port in (to_port, from_port, *self.masters()):
            self.node_client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def replicated(self) -> bool:
        """Every master has a replica whose link is up (the next failover has one)."""
        masters = self.masters()
        if len(masters) < 3:
            return False
        for port in masters:
            with contextlib.suppress(redis.RedisError):
                info = self.node_client(port).info("replication")
                if int(info.get("connected_slaves", 0)) >= 1:
                    continue
            return False
        for port in self.alive():
            if port in masters:
                continue
            with contextlib.suppress(redis.RedisError):
                if self.node_client(port).info("replication").get("master_link_status") == "up":
                    continue
            return False
        return True


def wait_until(check: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = now() + timeout
    while now() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(step)
    return False


# ---- the chat nodes ------------------------------------------------------------------------


@dataclass
class Node:
    """One chat node: started again (a new ServerProc, a new log) after a stop."""

    idx: int
    folder: Path
    url: str
    server: ServerProc | None = None
    runs: int = 0
    logs: list[Path] = field(default_factory=list)
    stopped_on_purpose: bool = False

    def start(self) -> None:
        # As tests/cluster/conftest.py `start_node`: one folder and key file for all.
        log = f"node{self.idx}-{self.runs}.log"
        self.server = launch(self.folder, "--cluster", self.url, log_name=log)
        self.logs.append(self.folder / log)
        self.runs += 1
        self.stopped_on_purpose = False

    @property
    def up(self) -> bool:
        return self.server is not None and self.server.proc.poll() is None


# ---- the users -----------------------------------------------------------------------------


@dataclass
class SessionRec:
    no: int
    node: int
    t_auth: float
    t_ready: float = 0.0
    t_end: float | None = None
    end: str = ""
    acked: int = 0  # offline_ack upto that the server has handled (a pong came after it)


@dataclass
class SendRec:
    user: str
    cid: int
    kind: str  # p (names), a ("*"), r (room)
    to: Any
    text: str
    t: float
    session: int
    node: int
    answer: Frame | None = None
    t_answer: float | None = None


@dataclass
class Receipt:
    user: str
    session: int
    t: float
    id: int
    sender: str
    to: Any
    text: str
    offline: bool


class User(threading.Thread):
    """One user: a thread that sends at its own pace and reads its socket all the time."""

    def __init__(self, soak: Soak, name: str, home: int, seed: int) -> None:
        super().__init__(name=f"user-{name}", daemon=True)
        self.soak, self.user, self.home = soak, name, home
        self.rng = random.Random(seed)
        self.rooms: list[str] = []
        self.sessions: list[SessionRec] = []
        self.sends: list[SendRec] = []
        self.receipts: list[Receipt] = []
        self.other_frames: list[tuple[float, Frame]] = []
        self.login_failures: list[tuple[float, int, str]] = []
        self.sock: Any = None
        self.buf = b""
        self.cur: SessionRec | None = None
        self.pending: dict[int, SendRec] = {}
        self.pings: list[int] = []  # per ping in flight: the offline upto it confirms (or 0)
        self.counter = 0
        self.commands: list[tuple[float, int | None]] = []  # (pause, node) reconnects
        self.lock = threading.Lock()
        self.target: int | None = None
        self.bye_reason = ""

    # ---- connection -------------------------------------------------------------------
    def connect(self) -> bool:
        nodes = self.soak.nodes
        up = [n.idx for n in nodes if n.up]
        if not up:
            return False
        pick = self.target if self.target in up else self.home if self.home in up else None
        idx = pick if pick is not None else self.rng.choice(up)
        node = nodes[idx]
        assert node.server is not None
        rec = SessionRec(len(self.sessions), idx, now())
        try:
            s = Session(node.server, self.user, features=("rooms",))
        except Exception as exc:  # refused (Redis away), node gone: try again
            self.login_failures.append((now(), idx, f"{type(exc).__name__}: {exc}"[:200]))
            return False
        rec.t_ready = now()
        self.sessions.append(rec)
        self.cur, self.sock, self.buf = rec, s.c.sock, s.c._buf
        self.sock.setblocking(True)
        self.target, self.bye_reason = None, ""
        self.pings = []
        for f in s.inbox:
            self.handle(f)
        offline = [r.id for r in self.receipts if r.session == rec.no and r.offline]
        if offline:
            self.write({"type": "offline_ack", "upto": max(offline)})
            self.write({"type": "ping"})
            self.pings.append(max(offline))
        return True

    def write(self, obj: Frame) -> None:
        data = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def read(self, timeout: float) -> list[Frame]:
        """Frames that arrive within `timeout` (whole frames only; the rest stays)."""
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if ready:
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionError, OSError) as exc:
                raise Closed(str(exc)) from exc
            if not chunk:
                raise Closed("eof")
            self.buf += chunk
        out = []
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if len(self.buf) < 4 + n:
                break
            out.append(json.loads(self.buf[4 : 4 + n]))
            self.buf = self.buf[4 + n :]
        return out

    def ended(self, why: str) -> None:
        assert self.cur is not None
        self.cur.t_end, self.cur.end = now(), why
        with contextlib.suppress(OSError):
            self.sock.close()
        self.cur, self.sock = None, None

    def disconnect(self) -> None:
        """A polite `bye`, then read to the end: every frame sent before it is recorded."""
        try:
            self.write({"type": "bye"})
            deadline = now() + 5
            while now() < deadline:
                for f in self.read(0.2):
                    self.handle(f)
        except (Closed, OSError):
            pass
        self.ended("bye (chaos)")

    # ---- traffic ----------------------------------------------------------------------
    def send_one(self) -> None:
        assert self.cur is not None
        roll = self.rng.random()
        others = [u.user for u in self.soak.users if u is not self]
        if roll < 0.3 and self.rooms:
            kind, to = "r", self.rng.choice(self.rooms)
        elif roll < 0.45:
            kind, to = "a", "*"
        else:
            kind, to = "p", self.rng.sample(others, self.rng.choice((1, 1, 2)))
        self.counter += 1
        text = f"{self.user}|{self.counter}|{kind}"
        rec = SendRec(self.user, self.counter, kind, to, text, now(), self.cur.no, self.cur.node)
        self.sends.append(rec)
        self.pending[self.counter] = rec
        self.write({"type": "send", "id": self.counter, "to": to, "text": text})

    def handle(self, f: Frame) -> None:
        t = now()
        kind = f.get("type")
        if kind == "roster":
            self.write({"type": "roster_ack", "seq": f["seq"]})
        elif kind in ("sent", "error") and f.get("id") in self.pending:
            rec = self.pending.pop(f["id"])
            rec.answer, rec.t_answer = f, t
        elif kind == "msg":
            assert self.cur is not None
            self.receipts.append(
                Receipt(
                    self.user,
                    self.cur.no,
                    t,
                    int(f["id"]),
                    f["from"],
                    f["to"],
                    f["text"],
                    bool(f.get("offline")),
                )
            )
        elif kind == "pong":
            if self.pings:
                upto = self.pings.pop(0)
                if upto and self.cur is not None:
                    self.cur.acked = max(self.cur.acked, upto)
        else:
            if kind == "bye":
                self.bye_reason = str(f.get("reason"))
            self.other_frames.append((t, f))

    def run(self) -> None:
        soak = self.soak
        next_send = now() + self.rng.uniform(0, 0.5)
        while not soak.stop.is_set():
            if self.sock is None:
                if not self.connect():
                    time.sleep(self.rng.uniform(0.2, 0.6))
                continue
            with self.lock:
                cmd = self.commands.pop(0) if self.commands else None
            if cmd is not None:
                pause, target = cmd
                self.disconnect()
                time.sleep(pause)
                self.target = target
                continue
            try:
                if not soak.quiet.is_set() and now() >= next_send:
                    self.send_one()
                    next_send = now() + self.rng.uniform(0.25, 0.6)
                for f in self.read(min(max(next_send - now(), 0), 0.05)):
                    self.handle(f)
            except (Closed, OSError) as exc:
                why = f"closed by the server ({exc})"
                if self.bye_reason:
                    why = f"bye {self.bye_reason}"
                self.ended(why)

    def pump_until(self, pred: Any, timeout: float) -> bool:
        """After the thread's end: read (and record) until `pred()` or `timeout`."""
        deadline = now() + timeout
        while now() < deadline:
            if pred():
                return True
            for f in self.read(0.05):
                self.handle(f)
        return bool(pred())

    def request(self, obj: Frame, timeout: float = 10.0) -> Frame | None:
        """A request after the thread's end; its answer (or None)."""
        if self.sock is None:
            return None
        got: list[Frame] = []
        rid = obj["id"]
        original = self.handle

        def keep(f: Frame) -> None:
            if f.get("id") == rid and f.get("type") != "msg":
                got.append(f)
            else:
                original(f)

        self.handle = keep  # type: ignore[method-assign]
        try:
            self.write(obj)
            self.pump_until(lambda: bool(got), timeout)
        finally:
            self.handle = original  # type: ignore[method-assign]
        return got[0] if got else None

    def history_ids(self, with_: str, floor: int) -> set[int] | None:
        """Ids of the conversation's history down to `floor` (None: no answer)."""
        ids: set[int] = set()
        before: int | None = None
        for page in range(200):
            req: Frame = {"type": "history", "id": f"h{with_}{page}", "with": with_, "limit": 200}
            if before is not None:
                req["before"] = before
            answer = self.request(req)
            if answer is None or answer.get("type") != "history":
                return None
            msgs = answer["messages"]
            ids |= {int(m["id"]) for m in msgs}
            if not msgs or not answer["more"] or min(ids) <= floor:
                return ids
            before = int(msgs[0]["id"])
        return ids


# ---- the soak ------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    t0: float
    t1: float = 0.0
    detail: str = ""
    ok: bool = True


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.folder = Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
        self.stop = threading.Event()
        self.quiet = threading.Event()
        self.nodes: list[Node] = []
        self.users: list[User] = []
        self.faults: list[Fault] = []
        self.room_members: dict[str, list[str]] = {}
        self.violations: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.t0 = now()
        self.wall0 = time.time()
        self.rc: ChaosCluster | None = None

    def say(self, text: str) -> None:
        print(f"[{now() - self.t0:7.2f}] {text}", flush=True)

    def violate(self, what: str, evidence: str) -> None:
        self.violations.append((what, evidence))

    # ---- set-up -------------------------------------------------------------------------
    def setup(self) -> None:
        folder = self.folder / "rc"
        folder.mkdir()
        ports = [free_cluster_port() for _ in range(6)]
        self.rc = ChaosCluster(folder, ports, ("--cluster-node-timeout", "1500"), replicas=1)
        self.rc.start()
        if not wait_until(self.rc.replicated, 30):
            raise RuntimeError("the Redis Cluster has no replica per master")
        self.say(f"redis cluster: masters {self.rc.masters()} of {ports}")
        for i in range(self.args.nodes):
            node = Node(i, self.folder, self.rc.url)
            node.start()
            self.nodes.append(node)
        names = [f"u{i:02d}" for i in range(self.args.users)]
        for i, name in enumerate(names):
            node = self.nodes[i % len(self.nodes)]
            assert node.server is not None
            register(node.server, name)
            self.users.append(User(self, name, i % len(self.nodes), self.args.seed * 1000 + i))
        # Rooms with members on several nodes.
        for r in range(self.args.rooms):
            room = f"#room{r}"
            members = self.rng.sample(names, max(3, len(names) // 2))
            for j, name in enumerate(members):
                user = self.users[names.index(name)]
                node = self.nodes[user.home].server
                assert node is not None
                s = Session(node, name, features=("rooms",))
                kind = "room_create" if j == 0 else "join"
                answer = s.ask({"type": kind, "id": "r", "room": room}, timeout=10)
                assert answer["type"] == "ok", answer
                s.close()
                user.rooms.append(room)
            self.room_members[room] = members
        self.say(f"nodes {len(self.nodes)}, users {len(names)}, rooms {self.room_members}")

    # ---- faults -------------------------------------------------------------------------
    def inbox_channels(self) -> list[str]:
        assert self.rc is not None
        ids = self.rc.client().zrange(keys.NODES, 0, -1)
        return [keys.node_inbox(i.decode()) for i in ids]

    def reshard(self, f: Fault) -> None:
        rc = self.rc
        assert rc is not None
        used = {key_slot(c.encode()) for c in self.inbox_channels()}
        for port in rc.masters():
            used |= {key_slot(k) for k in rc.node_client(port).scan_iter(count=1000)}
        chosen = sorted(self.rng.sample(sorted(used), max(1, len(used) // 2)))
        masters = rc.masters()
        moved = 0
        for slot in chosen:
            owner = rc.slot_owner(slot)
            target = self.rng.choice([p for p in masters if p != owner])
            rc.move_slot(slot, target, pause=0.005)
            moved += 1
        f.detail = f"{moved} of {len(used)} slots in use moved"

    def kill_master(self, f: Fault) -> None:
        rc = self.rc
        assert rc is not None
        victim = self.rng.choice(rc.masters())
        replica = rc.replica_of(victim)
        i = rc.ports.index(victim)
        rc.procs[i].send_signal(signal.SIGKILL)
        rc.procs[i].wait(10)
        took = now()

        def promoted() -> bool:
            return bool(rc.node_client(replica).execute_command("ROLE")[0] == b"master")

        # Started again only once its replica is the master: a master without persistence
        # started before that comes back empty with its slots, and its replica copies the
        # emptiness (Redis' own warning about masters without persistence).
        failed_over = wait_until(promoted, 30) and wait_until(
            lambda: rc.healthy(without=victim), 30
        )
        f.detail = f"master {victim} killed; {replica} took over in {now() - took:.1f}s"
        if not failed_over:
            f.ok = False
            f.detail += " NOT done in 30 s"
        rc.restart_node(i)  # back as a replica of its successor
        f.detail += "; restarted as a replica"

    def freeze_master(self, f: Fault) -> None:
        rc = self.rc
        assert rc is not None
        victim = self.rng.choice(rc.masters())
        i = rc.ports.index(victim)
        pause = self.rng.uniform(2, 5)
        rc.procs[i].send_signal(signal.SIGSTOP)
        time.sleep(pause)
        rc.procs[i].send_signal(signal.SIGCONT)
        f.detail = f"master {victim} frozen {pause:.1f}s"

    def stop_node(self, f: Fault) -> None:
        up = [n for n in self.nodes if n.up]
        if len(up) < 2:
            f.detail = "skipped: one node up"
            return
        node = self.rng.choice(up)
        assert node.server is not None
        node.stopped_on_purpose = True
        code = node.server.stop(signal.SIGTERM)
        if code != 0:
            self.violate("(f) a node's clean stop", f"node {node.idx} exited {code} on SIGTERM")
        pause = self.rng.uniform(2, 5)
        time.sleep(pause)
        node.start()
        back = [u for u in self.users if u.home == node.idx]
        for u in back:
            with u.lock:
                u.commands.append((self.rng.uniform(0, 1), node.idx))
        f.detail = f"node {node.idx} stopped {pause:.1f}s, started again; {len(back)} users back"

    def reconnect_user(self, f: Fault) -> None:
        user = self.rng.choice(self.users)
        target = self.rng.choice([n.idx for n in self.nodes if n.up])
        pause = self.rng.uniform(0.2, 3)
        with user.lock:
            user.commands.append((pause, target))
        f.detail = f"{user.user} away {pause:.1f}s, back on node {target}"

    def chaos(self) -> None:
        assert self.rc is not None
        kinds = {
            "reshard": (self.reshard, 2),
            "kill_master": (self.kill_master, 2),
            "freeze_master": (self.freeze_master, 2),
            "stop_node": (self.stop_node, 1.5),
            "reconnect_user": (self.reconnect_user, 2),
        }
        end = self.t0 + self.args.seconds
        time.sleep(5)  # traffic first
        while now() < end - 10:
            kind = self.rng.choices(list(kinds), [w for _, w in kinds.values()])[0]
            fault = Fault(kind, now())
            self.faults.append(fault)
            self.say(f"fault: {kind} ...")
            try:
                kinds[kind][0](fault)
            except Exception as exc:
                fault.ok = False
                fault.detail += f" FAILED: {type(exc).__name__}: {exc}"
            # Recovery before the next one: every slot served, a replica per master, the
            # chat nodes up.
            if not wait_until(lambda: self.rc is not None and self.rc.replicated(), 40):
                fault.ok = False
                fault.detail += " (no replica per master 40 s after)"
            if not wait_until(self.rc.healthy, 30):
                fault.ok = False
                fault.detail += " (cluster not ok 30 s after)"
            fault.t1 = now()
            self.say(f"fault: {kind}: {fault.detail} ({fault.t1 - fault.t0:.1f}s)")
            time.sleep(self.rng.uniform(3, 8))
        while now() < end:
            time.sleep(0.2)

    # ---- run ----------------------------------------------------------------------------
    def run(self) -> int:
        self.say(f"seed {self.args.seed}, {self.args.seconds}s, records in {self.folder}")
        try:
            self.setup()
            self.t0, self.wall0 = now(), time.time()
            for u in self.users:
                u.start()
            self.chaos()
            self.quiet.set()
            self.say(f"traffic stopped; {QUIET}s quiet")
            time.sleep(QUIET)
            self.stop.set()
            for u in self.users:
                u.join(30)
                if u.is_alive():
                    self.violate("soak", f"{u.user}'s thread did not end")
            deadline = now() + 30
            for u in self.users:  # a user between sessions at the end logs in again
                while u.sock is None and now() < deadline:
                    if not u.connect():
                        time.sleep(0.3)
                if u.sock is None:
                    why = u.login_failures[-3:] if u.login_failures else "no node up"
                    self.violate("a user logs in after the faults", f"{u.user}: {why}")
            self.say("checking (g): crossing between every pair of nodes, room requests")
            self.after_faults()
            self.say("checking (a)-(f)")
            self.check()
            self.say("checked")
        finally:
            self.teardown()
        self.dump()
        return self.summary()

    def teardown(self) -> None:
        for u in self.users:
            if u.sock is not None:
                with contextlib.suppress(OSError):
                    u.sock.close()
        for n in self.nodes:
            if n.server is not None:
                n.server.stop(signal.SIGTERM)
        if self.rc is not None:
            self.rc.stop(signal.SIGKILL)

    # ---- (g) after the faults -----------------------------------------------------------
    def after_faults(self) -> None:
        by_node: dict[int, list[User]] = defaultdict(list)
        for u in self.users:
            if u.cur is not None:
                by_node[u.cur.node].append(u)
        for a in by_node:
            for b in by_node:
                if a == b:
                    continue
                sender, receiver = by_node[a][0], by_node[b][0]
                started = now()
                ok = False
                n = 0
                while now() - started < 20 and not ok:
                    n += 1
                    text = f"probe|{a}->{b}|{n}"
                    cid = 10_000_000 + a * 100_000 + b * 1000 + n
                    ans = sender.request(
                        {"type": "send", "id": cid, "to": [receiver.user], "text": text}
                    )
                    if ans and ans.get("type") == "sent" and receiver.user in ans["delivered"]:
                        ok = receiver.pump_until(
                            lambda r=receiver, t=text: any(x.text == t for x in r.receipts), 10
                        )
                    else:
                        time.sleep(0.3)
                took = now() - started
                if not ok:
                    self.violate(
                        "(g) messages cross between every pair of nodes again",
                        f"node {a} -> node {b} ({sender.user} -> {receiver.user}): "
                        f"not delivered in 20 s",
                    )
                elif n > 1:
                    self.notes.append(f"(g) node {a} -> {b}: crossed after {n} tries, {took:.1f}s")
        for idx, users in by_node.items():
            u = next((x for x in users if x.rooms), None)
            if u is None:
                continue
            ans = u.request({"type": "topic", "id": f"t{idx}", "room": u.rooms[0], "topic": "t"})
            if not ans or ans.get("type") != "ok":
                self.violate("(g) room requests are ok", f"node {idx}, {u.user} topic: {ans}")

    # ---- the checks ---------------------------------------------------------------------
    def near_faults(self, t: float, before: float = 2.0, after: float = 5.0) -> str:
        near = [
            f"{f.kind}@{f.t0 - self.t0:.1f}-{f.t1 - self.t0:.1f}s"
            for f in self.faults
            if f.t0 - after <= t <= (f.t1 or f.t0) + before
        ]
        return ", ".join(near) or "none"

    def log_lines(self, t: float, span: float = 1.5, limit: int = 12) -> str:
        wall = self.wall0 + (t - self.t0)
        out = []
        for node in self.nodes:
            for path in node.logs:
                with contextlib.suppress(OSError):
                    for line in path.read_text(errors="replace").splitlines():
                        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ", line)
                        if not m:
                            continue
                        ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                        ts += int(m.group(2)) / 1000
                        if abs(ts - wall) <= span and " INFO " not in line:
                            out.append(f"    {path.name}: {line[:220]}")
        return "\n".join(out[:limit]) or "    (no warning in the node logs around it)"

    def show(self, r: Receipt) -> str:
        """A receipt, short."""
        off = " offline" if r.offline else ""
        return f"[{r.user} s{r.session} {self.rel(r.t)} id {r.id} {r.sender}->{r.to} {r.text}{off}]"

    def rel(self, t: float | None) -> str:
        return "-" if t is None else f"{t - self.t0:.2f}s"

    def check(self) -> None:
        users = {u.user: u for u in self.users}
        received: dict[str, dict[str, list[Receipt]]] = {
            u.user: defaultdict(list) for u in self.users
        }
        for u in self.users:
            for r in u.receipts:
                received[u.user][r.text].append(r)

        def continuous(u: User, t_from: float, t_to: float) -> SessionRec | None:
            for s in u.sessions:
                if s.t_ready <= t_from and (s.t_end is None or s.t_end > t_to):
                    return s
            return None

        def logged_in_after(u: User, t: float) -> SessionRec | None:
            return next((s for s in u.sessions if s.t_auth > t), None)

        to_history: list[tuple[User, str, SendRec]] = []
        late = 0
        answered_before: dict[tuple[str, int], float] = {}
        for u in self.users:
            for m in u.sends:
                a = m.answer
                # (d) every request answered within its deadline
                if a is None:
                    s = u.sessions[m.session]
                    if s.t_end is None:
                        self.violate(
                            "(d) every request is answered",
                            f"{m.text} at {self.rel(m.t)}, node {m.node}: no answer; session "
                            f"still open. faults: {self.near_faults(m.t)}",
                        )
                    continue
                # From when the server could take it up: a connection's frames are answered
                # in order (v1.1 section 7), and the users do not wait for a `sent` before
                # their next `send`, so one behind a send held to its deadline waits too.
                handled = max(m.t, answered_before.get((u.user, m.session), 0.0))
                answered_before[(u.user, m.session)] = m.t_answer or m.t
                took = (m.t_answer or 0) - handled
                if took > DEADLINE:
                    self.violate(
                        "(d) sends answered within about a second (docs/cluster.md)",
                        f"{m.text} at {self.rel(m.t)} node {m.node} answered {took:.2f}s after it "
                        f"could be handled: "
                        f"{a}; faults: {self.near_faults(m.t)}\n{self.log_lines(m.t)}",
                    )
                if a["type"] != "sent":
                    continue
                t_end = (m.t_answer or m.t) + GRACE
                if m.kind == "r":
                    names = [n for n in self.room_members[m.to] if n != u.user]
                    delivered, queued, missing = names, [], []
                else:
                    delivered = a.get("delivered", [])
                    queued = a.get("queued", [])
                    missing = a.get("missing", [])
                for name in delivered:
                    r = users[name]
                    if received[name].get(m.text):
                        continue
                    s = continuous(r, m.t, t_end)
                    if s is not None:
                        self.violate(
                            "(a) a recipient `delivered` names receives the message"
                            if m.kind != "r"
                            else "(a) a room member online receives the room's message",
                            f"{m.text} to {m.to} at {self.rel(m.t)} node {m.node}, answer {a}: "
                            f"{name} (session {s.no} on node {s.node}, ready {self.rel(s.t_ready)}"
                            f", end {self.rel(s.t_end)}) never got it; faults: "
                            f"{self.near_faults(m.t)}\n{self.log_lines(m.t)}",
                        )
                    else:
                        conv = m.to if m.kind == "r" else "*" if m.kind == "a" else u.user
                        to_history.append((r, conv, m))
                for name in queued:
                    got = received[name].get(m.text, [])
                    if [x for x in got if not x.offline]:
                        self.violate(
                            "(b) a message `queued` for a user is not delivered live too",
                            f"{m.text} at {self.rel(m.t)} answer {a}: {name} got it live "
                            f"{[self.show(x) for x in got]}; faults: {self.near_faults(m.t)}",
                        )
                    later = logged_in_after(users[name], m.t_answer or m.t)
                    if not got and later is not None:
                        self.violate(
                            "(a) a `queued` message comes at the next login (v1.1 section 3)",
                            f"{m.text} at {self.rel(m.t)} answer {a}: {name} logged in at "
                            f"{self.rel(later.t_auth)} (node {later.node}) and never got it; "
                            f"faults: {self.near_faults(m.t, after=2, before=20)}",
                        )
                for name in set(missing) - set(queued):
                    got = received[name].get(m.text, [])
                    if not got:
                        continue
                    # Taken before the `sent` said nobody took it: the publisher was told a
                    # wrong count (a subscription on a replica). After it: the publish,
                    # past the deadline, ran later (docs/cluster.md: a `sent` answered at
                    # the deadline may still be published): counted, not judged.
                    if min(x.t for x in got) < (m.t_answer or m.t):
                        self.violate(
                            "(b) a name `missing` did not get the message before the `sent`",
                            f"{m.text} at {self.rel(m.t)} answer {a} at {self.rel(m.t_answer)}:"
                            f" {name} got it {[self.show(x) for x in got]}; faults: "
                            f"{self.near_faults(m.t)}",
                        )
                    else:
                        late += 1
        # Left before the frame could reach them: the history has it (v1.1 section 4).
        by_conv: dict[tuple[str, str], list[SendRec]] = defaultdict(list)
        for r, conv, m in to_history:
            by_conv[(r.user, conv)].append(m)
        for (name, conv), sends in by_conv.items():
            r = users[name]
            want = {int(m.answer["msg_id"]): m for m in sends if m.answer}
            have = r.history_ids(conv, min(want))
            if have is None:
                self.violate("(d) history answered", f"{name} history with {conv}: no answer")
                continue
            for mid, m in want.items():
                if mid not in have:
                    self.violate(
                        "(a) a message `delivered` to a user who left is in the history",
                        f"{m.text} (msg_id {mid}) at {self.rel(m.t)}: {name} left, and "
                        f"its history with {conv} lacks it; faults: {self.near_faults(m.t)}",
                    )
        self.notes.append(f"{len(to_history)} deliveries to users who left judged by the history")
        self.notes.append(f"{late} deliveries said `missing` that arrived after the `sent`")
        # (b) none twice, (c) in order.
        repeats = across = 0
        for u in self.users:
            by_id: dict[int, list[Receipt]] = defaultdict(list)
            for x in u.receipts:
                by_id[x.id].append(x)
            for mid, got in by_id.items():
                if len(got) < 2:
                    continue
                first = got[0]
                # Offline copies not acknowledged come again (v1.1 section 3: at least once).
                acked = u.sessions[first.session].acked >= mid
                if all(x.offline for x in got[1:]) and first.offline and not acked:
                    repeats += 1
                    continue
                self.violate(
                    "(b) no message received twice",
                    f"{u.user} got msg {mid} {len(got)} times: {[self.show(x) for x in got]}; "
                    f"faults: {self.near_faults(first.t)}",
                )
            # Per conversation (names or "*": one path; each room: its own), the order sent;
            # msg.id rising per sender at a recipient (v1 clarification 10) over the v1 kinds.
            # Across a room and other conversations no order is promised in a cluster (v1.2
            # section 2: "per room"; docs/cluster.md: a room's messages go through its shard's
            # log, the others through the inbox): counted, not judged.
            per: dict[tuple[int, str, str], list[Receipt]] = defaultdict(list)
            for x in u.receipts:
                if x.text.startswith("probe"):
                    continue
                room = isinstance(x.to, str) and x.to.startswith("#")
                conv = x.to if room else "names" if isinstance(x.to, list) else "*"
                per[(x.session, x.sender, conv)].append(x)
                per[(x.session, x.sender, "ids" if not room else "rooms")].append(x)
                per[(x.session, x.sender, "all")].append(x)
            for (sno, sender, conv), got in per.items():
                for p, q in itertools.pairwise(got):
                    pn, qn = int(p.text.split("|")[1]), int(q.text.split("|")[1])
                    if conv in ("rooms", "all"):
                        across += qn <= pn
                        continue
                    if q.id <= p.id if conv == "ids" else qn <= pn:
                        self.violate(
                            "(c) per sender and conversation, the order sent"
                            if conv != "ids"
                            else "(c) msg.id increases per sender at each recipient",
                            f"{u.user} session {sno}, from {sender} ({conv}): {self.show(p)} "
                            f"then {self.show(q)}; faults: {self.near_faults(q.t)}",
                        )
            live: dict[str, list[Receipt]] = defaultdict(list)
            for x in u.receipts:
                v1_kind = not isinstance(x.to, str) or x.to == "*"
                if v1_kind and not x.offline and not x.text.startswith("probe"):
                    live[x.sender].append(x)
            for sender, got in live.items():
                for p, q in itertools.pairwise(got):
                    if q.id <= p.id and q.session != p.session:
                        self.violate(
                            "(c) msg.id never goes back per sender at a recipient, across "
                            "its sessions (v1.1 section 2)",
                            f"{u.user} from {sender}: {self.show(p)} then {self.show(q)}",
                        )
        self.notes.append(f"{repeats} offline repeats of messages not acknowledged (allowed)")
        self.notes.append(
            f"{across} pairs out of the order sent across a room and another conversation "
            "of one sender (no order promised there in a cluster)"
        )
        # Every account was registered before the faults: a login is refused for a while
        # (Redis away: `bye`), never `bad_credentials`.
        for u in self.users:
            for t, node, why in u.login_failures:
                if "bad_credentials" in why:
                    self.violate(
                        "a registered account's login is never `bad_credentials`",
                        f"{u.user} on node {node} at {self.rel(t)}: {why}; faults: "
                        f"{self.near_faults(t)}",
                    )
        # A connection the server ended without a reason.
        for u in self.users:
            for s in u.sessions:
                if s.end.startswith("closed by the server"):
                    self.violate(
                        "a connection ended without a `bye`",
                        f"{u.user} session {s.no} node {s.node} at {self.rel(s.t_end)}: "
                        f"{s.end}; faults: {self.near_faults(s.t_end or 0)}",
                    )
        # (e) no traceback, no thread died; (f) every node runs.
        for node in self.nodes:
            for path in node.logs:
                text = path.read_text(errors="replace")
                lines = text.splitlines()
                for i, line in enumerate(lines):
                    if "Traceback" in line or "died" in line:
                        self.violate(
                            "(e) no Traceback, no thread died",
                            f"{path.name}:{i + 1}\n" + "\n".join(lines[max(0, i - 3) : i + 12]),
                        )
                        break
            if not node.up:
                self.violate("(f) every node runs", f"node {node.idx} is not running")

    # ---- report -------------------------------------------------------------------------
    def dump(self) -> None:
        out = {
            "seed": self.args.seed,
            "faults": [asdict(f) for f in self.faults],
            "users": {
                u.user: {
                    "sessions": [asdict(s) for s in u.sessions],
                    "sends": [asdict(s) for s in u.sends],
                    "receipts": [asdict(r) for r in u.receipts],
                    "login_failures": u.login_failures,
                    "frames": u.other_frames,
                }
                for u in self.users
            },
            "violations": self.violations,
        }
        (self.folder / "records.json").write_text(json.dumps(out, default=str))

    def summary(self) -> int:
        sends = [m for u in self.users for m in u.sends]
        answered = [m for m in sends if m.answer is not None]
        kinds: dict[str, int] = defaultdict(int)
        for m in answered:
            a = m.answer or {}
            kinds[a["type"] if a["type"] != "error" else f"error {a.get('code')}"] += 1
        lat = sorted((m.t_answer or 0) - m.t for m in answered)
        print("\n==== chaos soak summary ====")
        print(f"seed {self.args.seed}, {self.args.seconds}s, records: {self.folder}")
        print(f"sends {len(sends)}, answered {len(answered)}: {dict(kinds)}")
        if lat:
            p99 = lat[int(len(lat) * 0.99) - 1] if len(lat) > 1 else lat[0]
            print(
                f"answer time p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
            )
        flags = {"delivered": 0, "missing": 0, "queued": 0}
        for m in answered:
            for k in flags:
                flags[k] += len((m.answer or {}).get(k, []))
        print(f"names in sent: {flags}")
        print(f"msg frames received {sum(len(u.receipts) for u in self.users)}")
        print(
            f"sessions {sum(len(u.sessions) for u in self.users)}, login refusals "
            f"{sum(len(u.login_failures) for u in self.users)}"
        )
        done: dict[str, int] = defaultdict(int)
        for f in self.faults:
            done[f.kind] += 1
            print(f"  fault {f.kind} at {self.rel(f.t0)}: {f.detail}{'' if f.ok else ' [!]'}")
        print(f"faults: {dict(done)}")
        for note in self.notes:
            print(f"note: {note}")
        by_kind: dict[str, list[str]] = defaultdict(list)
        for what, ev in self.violations:
            by_kind[what].append(ev)
        for what, evs in by_kind.items():
            print(f"\nVIOLATION {what}: {len(evs)}")
            for ev in evs[:5]:
                print(f"  - {ev}")
        print(f"\n{len(self.violations)} violation(s)")
        return 1 if self.violations else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--rooms", type=int, default=3)
    args = parser.parse_args()
    if REDIS is None or REDIS_CLI is None:
        print("redis-server and redis-cli are needed", file=sys.stderr)
        return 2
    soak = Soak(args)

    def stopped(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # the servers and Redis are stopped on the way out

    signal.signal(signal.SIGTERM, stopped)
    return soak.run()


if __name__ == "__main__":
    sys.exit(main())
