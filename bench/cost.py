#!/usr/bin/env python3
"""Server CPU per message, split into a fixed part and a part per recipient (issue 18).

    python bench/cost.py [--exe EXE] [--base-exe EXE] [--other NAME=EXE ...]
                         [--loads 50:0,200:0] [--mode window|rate] [--reps 3]
                         [--duration 8] [--out FILE]

Throughput on this 2-core machine moves with whatever else runs on it; the server's
own CPU time (utime + stime of every thread, from /proc, sampled by the loadgen over
exactly the deliveries it counts) moves far less. So this measures CPU, not speed: each
chat-server (`--exe`, and `--base-exe` / `--other` taking turns with it inside every
repetition) gets the same load, pinned like bench/run.py (server on core 1, loadgen on
core 0), and the figure is

    CPU per message = server CPU / deliveries x (C - 1)

at each number of clients C. A message costs a fixed part F (read, cut, decode, route,
stamp, encode, store, answer) plus r per recipient (its copy in a slot, its share of a
`send()`), so two (or more) values of C give F and r by a least-squares line through
(C - 1, CPU per message): the method of bench/README.md, "Why the misses".

`--mode window` (the default) is run.py's saturation closed loop (W = 8, clients ACK
at once): the issue's method, and the load at which a message's fixed part matters.
Its CPU per delivery does not follow throughput noise as long as the server is busy:
a closed loop keeps C x 8 messages in flight whatever the speed, so the batching (how
many messages share a tick and a `send()`) is the same. `--mode rate` offers a fixed
total rate instead (`C:R` pairs: R messages/s to everyone with C clients): below
saturation each message is fanned out nearly alone, one `send()` per recipient, so the
per-recipient part dominates there and the split says little about Python's share.

Each row also says how the server's CPU split between the loop thread (the main thread)
and every other thread, over the whole run (logins included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run


def thread_ticks(pid: int) -> dict[int, int]:
    """utime + stime of each thread of `pid`, in clock ticks."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = int(fields[11]) + int(fields[12])
    return out


def measure(target: run.Target, clients: int, rate: float, opts: argparse.Namespace) -> dict:
    c = str(clients)
    if opts.mode == "rate":
        load = ["--mode", "rate", "--rate", str(rate)]
    else:
        load = ["--mode", "window", "--window", "8"]
    load += [
        *("--clients", c, "--senders", c, "--quickack", "--login-batch", "10"),
        *("--duration", str(opts.duration), "--warmup", str(opts.warmup)),
    ]
    with run.server(target) as (pid, port):
        before = thread_ticks(pid)
        result = run.run_loadgen(target, pid, port, load, 600)
        after = thread_ticks(pid)
    loop = after.get(pid, 0) - before.get(pid, 0)
    total = sum(after.values()) - sum(before.get(t, 0) for t in after)
    result["loop_share"] = round(loop / total, 3) if total else None
    deliveries = result.get("deliveries_in_window") or 0
    if deliveries and result.get("server_cpu_s") is not None:
        result["us_per_msg"] = round(result["server_cpu_s"] * 1e6 / deliveries * (clients - 1), 2)
    return result


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(F, r): the least-squares line CPU per message = F + r x (C - 1)."""
    xs = [c - 1 for c, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    r = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - r * mx, r


def summary(rows: list[dict]) -> str:
    by: dict[tuple[str, int], list[float]] = {}
    loops: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        if "us_per_msg" in row:
            by.setdefault((row["server"], row["clients"]), []).append(row["us_per_msg"])
            loops.setdefault((row["server"], row["clients"]), []).append(row["loop_share"])
    lines = [
        "| server | C | runs | us per message (median) | runs (us) | loop thread share |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    servers = sorted({s for s, _ in by})
    for server in servers:
        for c in sorted(c for s, c in by if s == server):
            vals = by[(server, c)]
            lines.append(
                f"| {server} | {c} | {len(vals)} | {statistics.median(vals):.2f} | "
                f"{', '.join(f'{v:.1f}' for v in vals)} | "
                f"{statistics.median(loops[(server, c)]):.2f} |"
            )
    lines += [
        "",
        "| server | fixed us per message (F) | us per recipient (r) |",
        "| --- | --- | --- |",
    ]
    for server in servers:
        points = [(c, statistics.median(v)) for (s, c), v in sorted(by.items()) if s == server]
        if len(points) >= 2:
            f, r = fit(points)
            lines.append(f"| {server} | {f:.2f} | {r:.3f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--exe", default="", help="chat-server to measure (default: this venv's)")
    ap.add_argument("--base-exe", default="", help="another chat-server, taking turns with it")
    ap.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="NAME=EXE",
        help="one more chat-server that reads --exe's users file (e.g. an older commit of "
        "the same format), as NAME-t<N>; repeatable",
    )
    ap.add_argument(
        "--loads",
        default="50:0,200:0",
        help="C:R pairs (R: messages per second, for --mode rate; ignored by window)",
    )
    ap.add_argument("--mode", choices=("rate", "window"), default="window")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--summary", type=Path, nargs="*", help="only summarise these result files")
    opts = ap.parse_args()
    if opts.summary:
        rows = [json.loads(line) for p in opts.summary for line in p.read_text().splitlines()]
        print(summary(rows))
        return 0
    exe = str(Path(opts.exe).absolute()) if opts.exe else run.default_exe()
    targets = [run.Target(f"chat-t{opts.threads}", opts.threads, exe)]
    if opts.base_exe:
        base = str(Path(opts.base_exe).absolute())
        targets.append(run.Target(f"base-t{opts.threads}", opts.threads, base, run.BASE_STATE))
    for other in opts.other:
        name, _, path = other.partition("=")
        targets.append(
            run.Target(f"{name}-t{opts.threads}", opts.threads, str(Path(path).absolute()))
        )
    loads = [(int(c), float(r)) for c, r in (pair.split(":") for pair in opts.loads.split(","))]
    subprocess.run(["make", "-s", "-C", str(run.LOADGEN.parent)], check=True)
    run.STATE.mkdir(mode=0o700, exist_ok=True)
    run.raise_nofile()
    for t in targets:
        run.ensure_registered(max(c for c, _ in loads), t.data, t.exe)
    out = opts.out or run.BENCH / "results" / time.strftime("cost-%Y%m%d-%H%M%S.jsonl")
    out.parent.mkdir(exist_ok=True)
    print(f"results -> {out}", flush=True)
    rows = []
    for rep in range(1, opts.reps + 1):
        for clients, rate in loads:
            for t in targets:
                try:
                    result = measure(t, clients, rate, opts)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"FAILED {t.name} C={clients} rep={rep}: {exc}", flush=True)
                    continue
                result.update(part=f"cost-{opts.mode}", server=t.name, rep=rep)
                result.update(src_commit=run.server_version(t.exe), exe=t.exe)
                with out.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                rows.append(result)
                print(
                    f"[{time.strftime('%H:%M:%S')}] {t.name} C={clients} rep={rep}: "
                    f"{result.get('us_per_msg')} us/msg, {result.get('msgs_per_s')} msg/s, "
                    f"lost {result.get('lost')}, loop {result.get('loop_share')}, "
                    f"load {result.get('loadavg')}",
                    flush=True,
                )
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(run.BENCH))
    sys.exit(main())
