#!/usr/bin/env python3
"""py-spy profile of one chat-server during a saturation run, pinned as run.py pins it.

    python bench/profile.py EXE OUT [--data DIR] [--clients 100] [--format flamegraph|raw]
                            [--gil] [--native] [--by-thread] [--rate HZ]
                            [--logins N [--seconds S]]

Starts EXE (--threads 4) with run.py's options on core 1, runs the loadgen's closed
loop (C clients, W = 8, quick ACKs) for 15 s on core 0, and 4 s in records 10 s with
py-spy (on core 0 too, so it takes nothing from the server's core). Prints the
run's deliveries/s and each server thread's utime/stime over the profile, which
py-spy cannot show: it samples Python stacks, not CPU time. (With `--gil` a thread that
waits in epoll without the GIL is still sampled as its holder, py-spy 0.4: the per-thread
CPU is the figure to trust for how the time splits between threads; `--by-thread`
without `--gil` puts each sample under its thread.)

With --logins N it profiles a login burst instead: N clients log in (64 in flight, as
run.py's idle part does) and stay; py-spy records S seconds (default 10) from 4 s in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run


def thread_ticks(pid: int) -> dict[str, tuple[int, int]]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out[task.name] = (int(fields[11]), int(fields[12]))  # utime, stime
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("exe")
    ap.add_argument("out")
    ap.add_argument("--data", type=Path, default=run.STATE, help="folder of users.db/server.key")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--format", default="flamegraph")
    ap.add_argument("--gil", action="store_true", help="py-spy --gil: only the GIL holder")
    ap.add_argument("--native", action="store_true", help="py-spy --native: C frames too")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument(
        "--by-thread", action="store_true", help="py-spy --threads: each stack under its thread"
    )
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--logins", type=int, default=0, help="profile a burst of N logins")
    ap.add_argument("--seconds", type=int, default=10, help="how long py-spy records")
    opts = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    target = run.Target(
        f"chat-t{opts.threads}", opts.threads, str(Path(opts.exe).absolute()), opts.data
    )
    run.raise_nofile()
    snap: dict[str, dict[str, tuple[int, int]]] = {}
    with run.server(target) as (pid, port):

        def record() -> None:
            time.sleep(4)
            snap["a"] = thread_ticks(pid)
            cmd = [spy, "record", "-o", opts.out, "--pid", str(pid)]
            cmd += ["--duration", str(opts.seconds), "--rate", str(opts.rate)]
            cmd += ["--format", opts.format, *(["--gil"] if opts.gil else [])]
            cmd += [
                *(["--native"] if opts.native else []),
                *(["--threads"] if opts.by_thread else []),
            ]
            subprocess.run(["taskset", "-c", run.LOADGEN_CPU, *cmd], check=True)
            snap["b"] = thread_ticks(pid)

        spy_thread = threading.Thread(target=record)
        spy_thread.start()
        c = str(opts.clients)
        load = [
            *("--mode", "window", "--clients", c, "--senders", c, "--window", "8"),
            *("--quickack", "--login-batch", "10", "--duration", "14", "--warmup", "1"),
        ]
        if opts.logins:
            load = [
                *("--mode", "idle", "--clients", str(opts.logins), "--hold", "3"),
                *("--login-batch", "64", "--quickack", "--src-count", "8"),
            ]
        result = run.run_loadgen(target, pid, port, load, 3600)
        spy_thread.join()
    keys = ("login_s", "rss_per_conn_kb") if opts.logins else ()
    keys += ("deliveries_per_s", "server_us_per_delivery", "lost")
    print(json.dumps({k: result.get(k) for k in keys}))
    for tid, (ut, st) in sorted(snap["b"].items()):
        u0, s0 = snap["a"].get(tid, (0, 0))
        print(f"thread {tid}: utime {ut - u0} stime {st - s0} ticks during the profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
