#!/usr/bin/env python3
"""py-spy profile of one chat-server during a saturation run, pinned as run.py pins it.

    python bench/profile.py EXE OUT [--data DIR] [--clients 100] [--format flamegraph|raw]
                            [--gil] [--native] [--by-thread] [--rate HZ] [--perf]
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


#: What a sample of `perf record -g` was doing, by the first of these found in its stack
#: (kernel and native frames; py-spy cannot see them).
_PERF_KINDS = (
    ("page faults", ("page_fault",)),
    ("munmap/brk/madvise", ("munmap", "unmap_page_range", "__x64_sys_brk", "madvise")),
    ("send() (kernel)", ("tcp_sendmsg", "__sys_sendto")),
    ("recv() (kernel)", ("tcp_recvmsg", "__sys_recvfrom")),
    ("epoll_wait (kernel)", ("do_epoll_wait",)),
    ("futex (GIL, locks)", ("futex",)),
    ("fan-out copies (cd_fanout, memmove)", ("cd_fanout", "__memmove")),
    ("crypto (sealing)", ("libcrypto", "cipher_encrypt")),
    ("sqlite", ("libsqlite3",)),
    ("Python (interpreter, msgspec, cffi)", ("libpython", "_core.cpython", "_cffi_backend")),
)


def perf_summary(script: str, pid: int, seconds: float, messages: float) -> str:
    """A `perf script` dump as a table: each thread's samples by kind, and their CPU per
    message (perf samples at 999 Hz, one sample ~ 1 ms of CPU)."""
    counts: dict[str, dict[str, int]] = {}
    for sample in script.split("\n\n"):
        lines = sample.strip().splitlines()
        if not lines or len(lines[0].split()) < 2:
            continue
        tid = lines[0].split()[1]
        stack = "\n".join(lines[1:])
        kind = next((k for k, keys in _PERF_KINDS if any(x in stack for x in keys)), "other")
        thread = counts.setdefault(tid, {})
        thread[kind] = thread.get(kind, 0) + 1
    total = sum(sum(t.values()) for t in counts.values())
    out = [f"{total} samples in {seconds:.0f} s, {messages:.0f} messages", ""]
    out += [
        "| thread | kind | samples | share | us per message |",
        "| --- | --- | --- | --- | --- |",
    ]
    ranked = sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))
    for tid, kinds in ranked:
        name = "the loop (main thread)" if tid == str(pid) else f"thread {tid}"
        n = sum(kinds.values())
        out.append(
            f"| {name} | all | {n} | {100 * n / total:.1f} % | {n / 999 / messages * 1e6:.2f} |"
        )
        for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]):
            us = k / 999 / messages * 1e6
            out.append(f"| | {kind} | {k} | {100 * k / total:.1f} % | {us:.2f} |")
    return "\n".join(out) + "\n"


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
    ap.add_argument(
        "--perf",
        action="store_true",
        help="perf record -g (kernel and native frames) instead of py-spy; OUT gets a table "
        "of each thread's samples by kind, OUT.data the recording",
    )
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
            if opts.perf:
                cmd = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g"]
                cmd += ["-p", str(pid), "-o", f"{opts.out}.data", "--", "sleep", str(opts.seconds)]
            else:
                cmd = [spy, "record", "-o", opts.out, "--pid", str(pid)]
                cmd += ["--duration", str(opts.seconds), "--rate", str(opts.rate)]
                cmd += ["--format", opts.format, *(["--gil"] if opts.gil else [])]
                cmd += [
                    *(["--native"] if opts.native else []),
                    *(["--threads"] if opts.by_thread else []),
                ]
            subprocess.run(
                ["taskset", "-c", run.LOADGEN_CPU, *cmd], check=True, capture_output=opts.perf
            )
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
    if opts.perf:
        script = subprocess.run(
            ["perf", "script", "-i", f"{opts.out}.data"], capture_output=True, text=True
        ).stdout
        messages = result["deliveries_per_s"] * opts.seconds / max(opts.clients - 1, 1)
        Path(opts.out).write_text(perf_summary(script, pid, opts.seconds, messages))
        print(Path(opts.out).read_text())
    for tid, (ut, st) in sorted(snap["b"].items()):
        u0, s0 = snap["a"].get(tid, (0, 0))
        print(f"thread {tid}: utime {ut - u0} stime {st - s0} ticks during the profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
