#!/usr/bin/env python3
"""The cluster's cost: clients on two nodes against the same clients on one, over Redis.

    python bench/cluster.py --reps 3 --out bench/results/cluster-YYYYMMDD.jsonl
    python bench/cluster.py --reps 1 --setups two-nodes --parts sat --profile OUT.txt

Runs a private redis-server (no persistence, as the tests do; a durable Redis adds its
fsyncs), then, taking turns in each repetition:

  alone     chat-server without --cluster (the reference: no Redis at all);
  one-node  one node of a cluster, every client on it;
  two-nodes two nodes, odd clients on the second (loadgen --port2);
  two-nodes-rc  the same two nodes on a Redis Cluster of three masters (three more
            redis-servers, `redis+cluster://`; Redis CPU and bytes summed over the
            three, and the spread: the busiest master's CPU over the idlest's).

The servers share core 1 (two nodes: both on core 1, so the figure is what the cluster
costs, not what a second core buys); the load generator and redis-server share core 0.
This machine has two cores: a real deployment puts nodes and Redis on machines of their
own, so what matters here is the cost per message, not the totals. Reported per run:
deliveries/s and p50/p99 (saturation, C clients, window 8), p99 at 100 msg/s (C = 200),
Redis CPU per message and bytes through Redis per message (INFO stats), nodes' CPU.
With --profile, py-spy records the second node of two (raw stacks, 4 s of the saturation
run, on core 0): where a message's trip between nodes costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
import run

from chat.server.cluster.accounts import RedisAccounts
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.crypto.cipher import load_cipher
from chat.server.crypto.keyfile import load_or_create_key

STATE = run.STATE / "cluster"
NODE_CPU, AUX_CPU = "1", "0"


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            AUX_CPU,
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(STATE),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_redis_cluster(ports: list[int]) -> list[subprocess.Popen[bytes]]:
    """Three masters (no replicas) on AUX_CPU, made a cluster by redis-cli."""
    procs = []
    for port in ports:
        folder = STATE / f"rc-{port}"
        folder.mkdir(exist_ok=True)
        procs.append(
            subprocess.Popen(
                [
                    *("taskset", "-c", AUX_CPU, "redis-server", "--port", str(port)),
                    *("--bind", "127.0.0.1", "--cluster-enabled", "yes"),
                    *("--cluster-config-file", f"nodes-{port}.conf", "--save", ""),
                    *("--appendonly", "no", "--dir", str(folder)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    for port in ports:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
    cli = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports]]
    subprocess.run(
        [*cli, "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True
    )
    for _ in range(200):
        infos = [redis.Redis(port=p).execute_command("CLUSTER", "INFO").decode() for p in ports]
        if all("cluster_state:ok" in i for i in infos):
            return procs
        time.sleep(0.05)
    raise RuntimeError("the Redis Cluster is not ok")


def node(exe: str, port: int, redis_port: int | str | None) -> subprocess.Popen[bytes]:
    cmd = [
        "taskset",
        "-c",
        NODE_CPU,
        exe,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--rate-limit",
        "0",
        "--hash-cost",
        "10",
        "--log-level",
        "WARNING",
        "--data-dir",
        str(STATE),
        "--max-clients",
        "12000",
        "--idle-timeout",
        "0",
        "--ack-timeout",
        "600",
        "--history-file",
        str(STATE / f"history-{port}.db"),
        *run._new_store_option(exe),  # a fresh file beside the users file: meant
    ]
    if isinstance(redis_port, str):
        cmd += ["--cluster", redis_port]
    elif redis_port is not None:
        cmd += ["--cluster", f"redis://127.0.0.1:{redis_port}/0"]
    log = open(STATE / f"node-{port}.log", "wb")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=run.raise_nofile)
    run.wait_port(port, proc)
    return proc


def loadgen(port: int, port2: int | None, pid: int, args: list[str]) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        AUX_CPU,
        str(run.LOADGEN),
        "--proto",
        "chat",
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        *(["--port2", str(port2)] if port2 else []),
        *args,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, preexec_fn=run.raise_nofile, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"loadgen failed: {proc.stderr.strip()[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile(pid: int, out: Path) -> threading.Thread:
    """py-spy on `pid` from 1.5 s (logins and warm-up done) for 4 s, beside the run."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = ["taskset", "-c", AUX_CPU, spy, "record", "-o", str(out), "--pid", str(pid)]
    cmd += ["--duration", "4", "--format", "raw", "--nonblocking"]

    def record() -> None:
        time.sleep(1.5)
        subprocess.run(cmd, check=True, capture_output=True)

    thread = threading.Thread(target=record)
    thread.start()
    return thread


def one(
    setup: str,
    exe: str,
    redis_port: int,
    args: list[str],
    users: int,
    spy: Path | None = None,
    rc_ports: list[int] | None = None,
) -> dict[str, Any]:
    on_rc = setup.endswith("-rc")
    rc_url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in rc_ports or [])
    cluster: int | str | None = None if setup == "alone" else rc_url if on_rc else redis_port
    ports = [run.free_port()] + ([run.free_port()] if setup.startswith("two-nodes") else [])
    procs = [node(exe, p, cluster) for p in ports]
    spying = None
    try:
        if spy is not None:
            spying = profile(procs[-1].pid, spy)
        time.sleep(0.5)
        servers = [redis.Redis(port=p) for p in (rc_ports if on_rc and rc_ports else [redis_port])]
        stats0 = [r.info("stats") for r in servers]
        calls0 = [r.info("commandstats") for r in servers]
        redis_pids = [int(r.info("server")["process_id"]) for r in servers]
        before = [ticks(p.pid) for p in procs]
        before_redis = [ticks(pid) for pid in redis_pids]
        result = loadgen(ports[0], ports[1] if len(ports) > 1 else None, procs[0].pid, args)
        after = [ticks(p.pid) for p in procs]
        after_redis = [ticks(pid) for pid in redis_pids]
        stats1 = [r.info("stats") for r in servers]
        calls1 = [r.info("commandstats") for r in servers]
        if spying is not None:
            spying.join()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:  # said, and not waited for longer
                print(f"node {p.pid} did not stop within 60 s of SIGTERM: killed", flush=True)
                p.kill()
                p.wait()
    hz = os.sysconf("SC_CLK_TCK")
    msgs = max(result.get("sent", 0), 1)
    net = sum(
        (s1["total_net_input_bytes"] - s0["total_net_input_bytes"])
        + (s1["total_net_output_bytes"] - s0["total_net_output_bytes"])
        for s0, s1 in zip(stats0, stats1, strict=True)
    )
    each = [a - b for a, b in zip(after_redis, before_redis, strict=True)]
    calls: dict[str, int] = {}
    for c0, c1 in zip(calls0, calls1, strict=True):
        for name, stat in c1.items():
            done = int(stat["calls"]) - int(c0.get(name, {}).get("calls", 0))
            if done:
                kind = name.removeprefix("cmdstat_")
                calls[kind] = calls.get(kind, 0) + done
    result.update(
        # Commands per message, each kind (how many messages one publish or ZADD carries).
        redis_calls_per_msg={k: round(v / msgs, 4) for k, v in sorted(calls.items())},
        setup=setup,
        nodes_cpu_s=round(sum(a - b for a, b in zip(after, before, strict=True)) / hz, 2),
        redis_cpu_s=round(sum(each) / hz, 2),
        redis_cpu_each_s=[round(t / hz, 2) for t in each],
        redis_spread=round(max(each) / max(min(each), 1), 2),
        redis_us_per_msg=round(sum(each) / hz / msgs * 1e6, 2),
        redis_bytes_per_msg=round(net / msgs, 1),
        users=users,
    )
    return result


def ensure_users(url: str, count: int) -> None:
    """The loadgen's users (b00000.., bench-password) in the cluster's accounts."""
    key, _ = load_or_create_key(STATE / "server.key")
    link = Link(url)
    RedisAccounts(link, Box(key, load_cipher()), 10).register_many(
        (f"b{i:05d}", "bench-password") for i in range(count)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--exe", default=str(Path(sys.executable).parent / "chat-server"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--lat-clients", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--setups", default="alone,one-node,two-nodes")
    ap.add_argument("--parts", default="sat,pairs,lat")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy of node 2 (two-nodes)")
    opts = ap.parse_args()
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(["make", "-s", "-C", str(run.LOADGEN.parent)], check=True)
    run.raise_nofile()
    redis_port = run.free_port()
    redis_proc = start_redis(redis_port)
    rc_ports: list[int] = []
    rc_procs: list[subprocess.Popen[bytes]] = []
    if any(s.endswith("-rc") for s in opts.setups.split(",")):
        for _ in range(3):  # a port whose cluster bus port (+10000) is free too
            while True:
                port = run.free_port()
                if port + 10000 < 65536 and port not in rc_ports:
                    rc_ports.append(port)
                    break
        rc_procs = start_redis_cluster(rc_ports)
    rows: list[dict[str, Any]] = []
    out = opts.out or run.BENCH / "results" / time.strftime("cluster-%Y%m%d-%H%M%S.jsonl")
    try:
        ensure_users(f"redis://127.0.0.1:{redis_port}/0", max(opts.clients, opts.lat_clients))
        if rc_ports:
            rc_url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in rc_ports)
            ensure_users(rc_url, max(opts.clients, opts.lat_clients))
        for users in (Path(STATE / "users.db"),):  # alone: its own users file, made once
            if not users.exists():
                run.ensure_registered(max(opts.clients, opts.lat_clients), STATE, opts.exe)
        c = str(opts.clients)
        sat = [
            "--mode",
            "window",
            "--clients",
            c,
            "--senders",
            c,
            "--window",
            "8",
            "--quickack",
            "--login-batch",
            "10",
            "--duration",
            "5",
            "--warmup",
            "1",
        ]
        lat = [
            "--mode",
            "rate",
            "--clients",
            str(opts.lat_clients),
            "--senders",
            "1",
            "--rate",
            "100",
            "--login-batch",
            "10",
            "--duration",
            "10",
            "--warmup",
            "1",
        ]
        # Private messages at saturation: each client to its partner (loadgen --pairs:
        # with two nodes every message crosses; on one node none does).
        pairs = [*sat, "--pairs"]
        for rep in range(opts.reps):
            for part, args in (("sat", sat), ("pairs", pairs), ("lat", lat)):
                if part not in opts.parts.split(","):
                    continue
                for setup in opts.setups.split(","):
                    users = opts.lat_clients if part == "lat" else opts.clients
                    spy = opts.profile if part != "lat" and setup == "two-nodes" else None
                    result = one(setup, opts.exe, redis_port, args, users, spy, rc_ports)
                    result.update(part=part, rep=rep)
                    rows.append(result)
                    with out.open("a") as f:
                        f.write(json.dumps(result) + "\n")
                    print(
                        f"{part} {setup} rep={rep}: {result['deliveries_per_s']:.0f}/s "
                        f"p99 {result['lat_p99_us'] / 1000:.2f} ms, redis "
                        f"{result['redis_us_per_msg']} us/msg, "
                        f"{result['redis_bytes_per_msg']} B/msg",
                        flush=True,
                    )
    finally:
        for proc in (redis_proc, *rc_procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(
        "| part | setup | deliveries/s | p50 ms | p99 ms | nodes CPU us/delivery "
        "| redis CPU us/msg | redis bytes/msg | redis spread |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for part in ("sat", "pairs", "lat"):
        for setup in ("alone", "one-node", "two-nodes", "two-nodes-rc"):
            mine = [r for r in rows if r["part"] == part and r["setup"] == setup]
            if not mine:
                continue

            def med(key: str, rs: list[dict[str, Any]] = mine) -> float:
                return statistics.median(r[key] for r in rs)

            per = med("nodes_cpu_s") / max(med("deliveries_per_s") * med("window_s"), 1) * 1e6
            print(
                f"| {part} | {setup} | {med('deliveries_per_s') / 1e6:.2f} M | "
                f"{med('lat_p50_us') / 1000:.2f} | {med('lat_p99_us') / 1000:.2f} | {per:.3f} | "
                f"{med('redis_us_per_msg'):.2f} | {med('redis_bytes_per_msg'):.0f} | "
                f"{med('redis_spread'):.2f} |"
            )
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
