#!/usr/bin/env python3
"""The Python cost of one `send` on a worker and on the loop, in this process, no sockets.

    .venv/bin/python bench/hotpath.py [--users 50] [--messages 20000] [--per-batch 1]
                                      [--per-tick 8] [--to '*'] [--reps 5]

The worker's part: the core as the server wires it (`app.build_core`, through the tests'
`World`: real users file, real SQLite message store and its writer thread, real native
slots), `--users` logged in; each batch is `--per-batch` send frames posted to one user's
mailbox, `--per-tick` batches (of different users) run before the tick ends (its flush).
What is timed is the CPU of this thread (`time.thread_time`): decode, the state rules,
route, stamp, encode, fan-out, `sent`, the tick's end; the slots are not sockets (the
loop would write them), so no `send()` is in it. The store writer's CPU (another thread,
from /proc) is reported beside it, per message.

The loop's part: `Connections` reading from a real socketpair, each read holding
`--per-batch` frames, cutting them and posting them to a mailbox (whose pool only counts),
timed the same way.

bench/cost.py measures the whole server under load; this one is for comparing changes to
the hot path quickly. The machine is shared: the best of --reps is the figure least
disturbed by others (what a repetition loses to them only adds).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "server"))

from harness import World  # noqa: E402

from chat.server.core import native  # noqa: E402


def _payload(i: int, to: object, text: str) -> bytes:
    return json.dumps({"type": "send", "id": i, "to": to, "text": text}).encode()


def _thread_cpu(tid: int) -> float:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def worker_part(opts: argparse.Namespace) -> tuple[float, float]:
    """(us of this thread's CPU per message, us of the store writer's)."""
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), max_outbuf=1 << 26, max_total=1 << 34)
        try:
            users = [world.login(f"u{i:03d}") for i in range(opts.users)]
            for u in users:
                world.frames(u)
            to = "*" if opts.to == "*" else opts.to.split(",")
            text = "x" * 100
            lib, out = native.lib(), world.table.ptr
            writer = next(t for t in threading.enumerate() if t.name == "store-writer")
            pool = world.pool
            n = opts.messages
            per_batch, per_tick = opts.per_batch, opts.per_tick
            payloads = [_payload(i, to, text) for i in range(per_batch)]
            size = sum(map(len, payloads))

            def drain() -> None:
                for u in users:
                    lib.cd_consume(out, u.out.handle, len(u.out))
                world.inbox.take()

            # warm-up: caches (everyone's list, its JSON) and the first ids
            for u in users[:per_tick]:
                u.mailbox.post(list(payloads), size)
            pool.run()
            drain()
            w0 = _thread_cpu(writer.native_id)
            t0 = time.thread_time()
            done = 0
            k = 0
            while done < n:
                for _ in range(per_tick):
                    users[k % len(users)].mailbox.post(list(payloads), size)
                    k += 1
                pool.run()
                done += per_batch * per_tick
                if k % 64 < per_tick:
                    drain()
            cpu = time.thread_time() - t0
            time.sleep(0.5)  # the writer's last batch (within its 0.2 s delay)
            w1 = _thread_cpu(writer.native_id)
            return cpu * 1e6 / done, (w1 - w0) * 1e6 / done
        finally:
            world.close()


def loop_part(opts: argparse.Namespace) -> float:
    """us of this thread's CPU per message: recv, cut, post, the interest."""
    from chat.server.core.pool import Mailbox
    from chat.server.core.user import User
    from chat.server.net.connections import Connections
    from chat.server.net.selector import TunedEpollSelector
    from chat.server.net.transport import Transport
    from chat.shared.framing import FrameDecoder

    class Counting:
        def __init__(self) -> None:
            self.n = 0

        def submit(self, fn: object) -> None:
            self.n += 1

    table = native.OutTable(16, 1 << 20, 1 << 16, 1 << 24)
    selector = TunedEpollSelector()
    conns = Connections(selector, lambda: 1.0, lambda t: None)
    a, b = socket.socketpair()
    a.setblocking(False)
    pool = Counting()
    from chat.server.core.outbuf import OutBuffer

    user = User(
        1,
        a.fileno(),
        ("127.0.0.1", 1),
        OutBuffer(table, table.open(1, -1, False), False),
        None,
        pool,
        lambda u, items: None,
    )
    t = Transport(a, user, 1, FrameDecoder(65536), time.monotonic(), True)
    conns.add(t)
    frame = b"".join(
        len(p).to_bytes(4, "big") + p
        for p in [_payload(i, "*", "x" * 100) for i in range(opts.per_batch)]
    )
    mailbox: Mailbox = user.mailbox
    n = opts.messages // opts.per_batch
    cpu = 0.0
    for _ in range(n):
        b.send(frame)
        t0 = time.thread_time()
        for key, events in selector.select(0):
            conns.on_event(key.data, events)
        conns.after_events()
        cpu += time.thread_time() - t0
        mailbox._items.clear()  # what a worker would take
        mailbox.size = 0
        mailbox._scheduled = False
    a.close()
    b.close()
    return cpu * 1e6 / (n * opts.per_batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--per-batch", type=int, default=1)
    ap.add_argument("--per-tick", type=int, default=8)
    ap.add_argument("--to", default="*", help="'*' or names separated by commas")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--part", choices=("worker", "loop", "both"), default="both")
    opts = ap.parse_args()
    if opts.part in ("worker", "both"):
        runs = [worker_part(opts) for _ in range(opts.reps)]
        work = [r[0] for r in runs]
        store = [r[1] for r in runs]
        runs_text = ", ".join(f"{x:.2f}" for x in work)
        print(f"worker: {min(work):.2f} us/msg at best (runs {runs_text})")
        print(f"store writer: {statistics.median(store):.2f} us/msg (median)")
    if opts.part in ("loop", "both"):
        loops = [loop_part(opts) for _ in range(opts.reps)]
        runs_text = ", ".join(f"{x:.2f}" for x in loops)
        print(f"loop: {min(loops):.2f} us/msg at best (runs {runs_text})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
