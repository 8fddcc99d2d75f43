#!/usr/bin/env python3
"""Message store figures: the writer's rate, and the server with 1,000,000 stored messages.

    python bench/store.py writer            # messages/s by batch size, and durable commits/s
    python bench/store.py million           # start time, RSS and history page latency,
                                            # 1,000,000 messages against an empty store
    python bench/store.py all --out bench/results/store-YYYYMMDD.json

Run by hand, not by the tests. `million` builds its store once in bench/.state/million/
(about a minute; reused by later runs) and starts the real `chat-server` on it, pinned to
core 1 like bench/run.py, with the clients on core 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.keyfile import load_or_create_key
from chat.server.store import service as history
from chat.server.store.service import HistoryService
from chat.server.store.sqlite import Kept, MessageStore
from chat.shared.messages import Msg
from wire import WireClient

BENCH = Path(__file__).resolve().parent
STATE = BENCH / ".state"
MILLION = STATE / "million"
EMPTY = STATE / "empty"
USERS = [f"user{i:04d}" for i in range(1000)]
TEXT = "the quick brown fox jumps over the lazy dog; " * 2  # 90 bytes, a typical line


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- the writer -------------------------------------------------------------------------
def writer_rate(tmp: Path, batch: int, count: int) -> dict[str, Any]:
    """Hand over `count` messages as fast as possible; time until all are committed."""
    path = tmp / f"writer-{batch}.db"
    for extra in ("", "-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    history.MAX_BATCH = batch
    keeper = HistoryService(MessageStore.open(path, bytes(range(32)), load_cipher()), 1000)
    done = threading.Event()
    started = time.perf_counter()
    for i in range(count):
        msg = Msg(keeper.ids.take(1), USERS[i % 1000], "*", TEXT, time.time())
        last = i == count - 1
        keeper.keep([Kept((msg,), (), ())], (lambda ok: done.set()) if last else None)
    handed = time.perf_counter() - started
    done.wait()
    took = time.perf_counter() - started
    keeper.stop()
    return {
        "batch": batch,
        "messages": count,
        "per_s": round(count / took),
        "hand_over_us": round(handed / count * 1e6, 2),
    }


def durable_rate(tmp: Path, seconds: float = 5.0) -> dict[str, Any]:
    """One sender to one offline user: every message waits for its own fsync'd commit."""
    path = tmp / "durable.db"
    for extra in ("", "-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    history.MAX_BATCH = 2000
    keeper = HistoryService(MessageStore.open(path, bytes(range(32)), load_cipher()), 10**9)
    count, latencies = 0, []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        done = threading.Event()
        msg = Msg(keeper.ids.take(1), "alice", ("bob",), TEXT, time.time())
        t0 = time.perf_counter()
        keeper.keep([Kept((msg,), ("bob",), ("bob",))], lambda ok, done=done: done.set())
        done.wait()
        latencies.append(time.perf_counter() - t0)
        count += 1
    keeper.stop()
    return {
        "durable_per_s": round(count / seconds),
        "durable_p50_ms": round(statistics.median(latencies) * 1000, 3),
        "durable_p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


def bench_writer(count: int) -> dict[str, Any]:
    tmp = STATE / "writer"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = [writer_rate(tmp, batch, count) for batch in (1, 10, 100, 1000, 2000)]
    for row in rows:
        print(f"writer batch<={row['batch']}: {row['per_s']} msg/s", flush=True)
    durable = durable_rate(tmp)
    print(f"durable, one at a time: {durable}", flush=True)
    return {"writer": rows, **durable}


# --- 1,000,000 messages ------------------------------------------------------------------
def build_million(count: int) -> None:
    """Fill bench/.state/million/history.db once (directly, in transactions of 10,000)."""
    path = MILLION / "history.db"
    if path.exists():
        return
    MILLION.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, _ = load_or_create_key(MILLION / "server.key")
    store = MessageStore.open(path, key, load_cipher())
    rng = random.Random(1)
    started = time.perf_counter()
    ts = time.time() - 86400.0  # a day of traffic, inside the retention
    for base in range(1, count + 1, 10_000):
        kept = []
        for msg_id in range(base, min(base + 10_000, count + 1)):
            sender = rng.choice(USERS)
            if rng.random() < 0.5:
                kept.append(Kept((Msg(msg_id, sender, "*", TEXT, ts),), (), ()))
            else:
                peer = rng.choice(USERS)
                kept.append(Kept((Msg(msg_id, sender, (peer,), TEXT, ts),), (peer,), ()))
            ts += 86400.0 / count
        with store.transaction():
            store.put(kept)
    with store.transaction():
        store.reserve_ids(count + 1)
    store.close()
    print(f"built {count} messages in {time.perf_counter() - started:.0f} s", flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def serve(data: Path, exe: str) -> tuple[subprocess.Popen[bytes], int, float]:
    """Start chat-server on `data`, pinned to core 1: (process, port, seconds to listening)."""
    log = data / "server.log"
    log.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            exe,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--hash-cost",
            "10",
            "--rate-limit",
            "0",
            "--log-file",
            str(log),
        ]
    )
    while True:
        text = log.read_text() if log.exists() else ""
        if m := re.search(r"listening on \S+ port (\d+)", text):
            return proc, int(m.group(1)), time.perf_counter() - started
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {text}")
        time.sleep(0.005)


def pages(port: int, count: int, newest: int) -> list[float]:
    """`count` history requests (limit 50) from two users, half "*", half a private pair."""
    os.sched_setaffinity(0, {0})
    rng = random.Random(2)
    a, b = WireClient("127.0.0.1", port), WireClient("127.0.0.1", port)
    for c, name in ((a, USERS[1]), (b, USERS[2])):
        try:
            c.login(name, "pw", register=True)
        except AssertionError:
            c.close()
            raise
    latencies = []
    for i in range(count):
        peer = "*" if i % 2 == 0 else USERS[rng.randrange(3, 1000)]
        before = rng.randrange(2, newest + 2)
        t0 = time.perf_counter()
        a.send({"type": "history", "id": i, "with": peer, "before": before, "limit": 50})
        answer = a.recv_type("history", timeout=10)
        latencies.append(time.perf_counter() - t0)
        assert answer["id"] == i
    a.close()
    b.close()
    return latencies


def bench_million(exe: str, count: int, requests: int) -> dict[str, Any]:
    build_million(count)
    out: dict[str, Any] = {}
    for name, data in (("empty", EMPTY), ("million", MILLION)):
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in ("users.db",):
            (data / stale).unlink(missing_ok=True)
        if name == "empty":
            for extra in ("", "-wal", "-shm"):
                (data / f"history.db{extra}").unlink(missing_ok=True)
        proc, port, start_s = serve(data, exe)
        try:
            rss_start = rss_kb(proc.pid)
            lat = pages(port, requests, count if name == "million" else 1)
            rss_after = rss_kb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        out[name] = {
            "start_s": round(start_s, 3),
            "rss_start_mb": round(rss_start / 1024, 1),
            "rss_after_mb": round(rss_after / 1024, 1),
            "page_p50_ms": round(statistics.median(lat) * 1000, 3),
            "page_p99_ms": round(percentile(lat, 99) * 1000, 3),
            "requests": requests,
        }
        print(f"{name}: {out[name]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["writer", "million", "all"])
    ap.add_argument("--exe", default=str(Path(sys.executable).parent / "chat-server"))
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--writer-messages", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    opts = ap.parse_args()
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()}
    if opts.what in ("writer", "all"):
        result |= bench_writer(opts.writer_messages)
    if opts.what in ("million", "all"):
        result |= bench_million(opts.exe, opts.messages, opts.requests)
    if opts.out:
        opts.out.parent.mkdir(exist_ok=True)
        opts.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
