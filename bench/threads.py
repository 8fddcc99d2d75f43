#!/usr/bin/env python3
"""CPU per message of each thread of the nodes at saturation (bench/README.md, "Stop 26").

    python bench/threads.py alone|one-node|two-nodes|two-nodes-rc [sat|pairs|lat] [--exe PATH]
                            [--spy OUT]

Starts what bench/cluster.py starts for the setup (its redis-server, its users, the nodes
pinned to core 1, the loadgen on core 0), runs its `sat` (or `pairs`) load for 6 s, or its
`lat` load (100 msg/s to 199 others) for 12 s, and reads each thread's time on a CPU from
/proc/<pid>/task/*/schedstat over 3 s (`lat`: 8 s) of it (py-spy names the threads at the
start). Prints microseconds of CPU per message per thread: where a message's cost lies,
which a profile of samples cannot say (it counts waiting too), and each thread's context
switches per message (/proc/<pid>/task/*/status: each one a hand-off of the core, and of a
GIL). `--spy OUT` also records the last node with py-spy over the window (raw stacks, one
line per stack, the thread first; the sampler's CPU is then in the figures).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

import cluster


def ticks(pid: int) -> dict[int, int]:
    """Nanoseconds each thread ran (schedstat: exact, where utime + stime are sampled at the
    clock's tick, which a load of 100 messages a second can fall in step with)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    return out


def switches(pid: int) -> dict[int, int]:
    """Context switches of each thread (voluntary and not): each is a hand-off of the core
    and, for a Python thread, mostly of the GIL."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(
            line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line
        )
        out[int(task.name)] = int(fields["voluntary_ctxt_switches"]) + int(
            fields["nonvoluntary_ctxt_switches"]
        )
    return out


def names(pid: int) -> dict[int, str]:
    spy = Path(sys.executable).parent / "py-spy"
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True)
    return {int(m[1]): m[2] for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', dump.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("setup", choices=("alone", "one-node", "two-nodes", "two-nodes-rc"))
    ap.add_argument("part", nargs="?", default="sat", choices=("sat", "pairs", "lat"))
    ap.add_argument("--exe", default=str(Path(sys.executable).parent / "chat-server"))
    ap.add_argument("--spy", metavar="OUT", help="also py-spy the last node over the window (raw)")
    opts = ap.parse_args()
    cluster.STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    run.raise_nofile()
    redis_port = run.free_port()
    redis_proc = cluster.start_redis(redis_port)
    procs: list[subprocess.Popen[bytes]] = []
    rc_procs: list[subprocess.Popen[bytes]] = []
    try:
        lat = opts.part == "lat"
        users = 200 if lat else 100
        url: int | str | None = None if opts.setup == "alone" else redis_port
        if opts.setup.endswith("-rc"):  # three masters on core 0, as bench/cluster.py
            rc_ports = [p for p in (run.free_port() for _ in range(12)) if p < 55536][:3]
            rc_procs = cluster.start_redis_cluster(rc_ports)
            url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in rc_ports)
            cluster.ensure_users(url, users)
        cluster.ensure_users(f"redis://127.0.0.1:{redis_port}/0", users)
        run.ensure_registered(users, cluster.STATE, opts.exe)
        ports = [run.free_port() for _ in range(2 if opts.setup.startswith("two-nodes") else 1)]
        procs = [cluster.node(opts.exe, p, url) for p in ports]
        time.sleep(0.5)
        named: dict[int, str] = {}
        for p in procs:
            named.update(names(p.pid))
        load = ["--mode", "window", "--window", "8", "--clients", "100", "--senders", "100"]
        load += ["--quickack", "--login-batch", "10", "--duration", "6", "--warmup", "1"]
        load += ["--pairs"] if opts.part == "pairs" else []
        if lat:
            load = ["--mode", "rate", "--clients", "200", "--senders", "1", "--rate", "100"]
            load += ["--login-batch", "10", "--duration", "12", "--warmup", "1"]
        result: dict[str, Any] = {}
        port2 = ports[1] if len(ports) > 1 else None
        driver = threading.Thread(
            target=lambda: result.update(cluster.loadgen(ports[0], port2, procs[0].pid, load))
        )
        driver.start()
        time.sleep(3.0)
        before = [ticks(p.pid) for p in procs]
        before_sw = [switches(p.pid) for p in procs]
        started = time.monotonic()
        window = 8.0 if lat else 3.0
        if opts.spy:  # the sampler takes a share of the core: the figures below include it
            spy = Path(sys.executable).parent / "py-spy"
            spy_args = ["record", "--pid", str(procs[-1].pid), "--threads", "--nonblocking"]
            spy_args += ["--duration", str(int(window)), "--rate", "500", "--format", "raw"]
            subprocess.run(
                [str(spy), *spy_args, "--output", opts.spy],
                capture_output=True,
                check=False,
            )
        else:
            time.sleep(window)
        after = [ticks(p.pid) for p in procs]
        after_sw = [switches(p.pid) for p in procs]
        seconds = time.monotonic() - started
        driver.join()
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        for r in (redis_proc, *rc_procs):
            r.terminate()
    per_s = result["deliveries_per_s"] / {"sat": 99, "pairs": 1, "lat": 199}[opts.part]
    print(f"{opts.setup} {opts.part}: {per_s:.0f} messages/s")
    total = switched = 0.0
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        for used, tid in sorted(((a[t] - b.get(t, 0), t) for t in a), reverse=True):
            if used > 0:
                us = used / 1e9 / seconds / per_s * 1e6
                sw = (after_sw[i].get(tid, 0) - before_sw[i].get(tid, 0)) / seconds / per_s
                total += us
                switched += sw
                name = named.get(tid, "?")
                print(f"  node {i} {name:24} {us:6.2f} us {sw:6.3f} switches per message")
    print(f"  all threads {total:.2f} us, {switched:.3f} switches per message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
