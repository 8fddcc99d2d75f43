#!/usr/bin/env python3
"""A Redis round trip back to back and after a rest (bench/README.md, "Stop 26").

    python bench/idle_rtt.py [--rest-ms 10] [--samples 300]

Starts bench/cluster.py's redis-server (core 0) and times redis-py `PING`s from this process
(pin it with `taskset -c 1`): back to back, then each after `--rest-ms` of quiet. On a
virtual machine whose idle CPUs sleep, the second is several times the first: what every
hop between processes costs a message at a low rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

import cluster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rest-ms", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=300)
    opts = ap.parse_args()
    cluster.STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = run.free_port()
    proc = cluster.start_redis(port)
    try:
        client = redis.Redis(port=port)
        client.ping()
        for rest in (0.0, opts.rest_ms / 1000):
            times = []
            for _ in range(opts.samples):
                time.sleep(rest)
                start = time.perf_counter()
                client.ping()
                times.append((time.perf_counter() - start) * 1e6)
            times.sort()
            p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
            print(f"PING after {rest * 1000:.0f} ms of rest: p50 {p50:.0f} us, p90 {p90:.0f} us")
    finally:
        proc.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
