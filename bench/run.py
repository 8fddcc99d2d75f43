#!/usr/bin/env python3
"""Benchmark driver: chat-server and ngIRCd side by side, same loadgen, same run.

Every measurement starts a fresh server pinned to one core (taskset) and runs
the C load generator pinned to the other, so peak RSS (VmHWM) belongs to that
run alone and the servers take turns under the same machine conditions.
Results are appended as JSON lines, then summarised (medians) as Markdown.

    python bench/run.py                      # full matrix (about 30 minutes, plus a
                                             # one-time registration of 10,000 users)
    python bench/run.py --parts sat --reps 1 --clients 100   # a quick look

Parts (default sat,satord,lat,idle):
  sat     closed-loop saturation, C x servers, clients that ACK at once;
  satord  the same at C=200 with ordinary clients, whose ACKs cost the
          loadgen far less (a headroom check on the loadgen);
  lat     fixed 100 msg/s, C=200, ordinary clients and clients that ACK at once;
  idle    RSS per idle logged-in connection with 2,000 and 10,000 connections.

Servers (every part runs each of them in turn, inside the same repetition):
  ngircd          ngIRCd 26 (bench/ngircd/ngircd.conf);
  chat-t<N>       chat-server (--exe, default: the one on PATH / in this venv), --threads N;
  base-t<N>       with --base-exe PATH: that chat-server (e.g. an older commit), --threads N,
                  right after chat-t<N>, with its own users file in bench/.state/base/;
  chat-tls-t<N>   with --tls: the --exe server with --tls-cert/--tls-key (a self-signed
                  pair in bench/.state/), the loadgen speaking TLS (loadgen --tls);
  nostore-t<N>    with --store-ab: the --exe server with --no-history (no message store),
                  right after chat-t<N>: what the store costs.

Every chat-server run starts with an empty message store (bench/.state/history-*.db is
removed first), so runs do not slow each other down by growing one file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / "loadgen" / "loadgen"
NGIRCD_CONF = BENCH / "ngircd" / "ngircd.conf"
STATE = BENCH / ".state"  # users file and key reused across runs (registration is slow by design)
BASE_STATE = STATE / "base"  # --base-exe: its own users file (the formats may differ)
TLS_CERT, TLS_KEY = STATE / "cert.pem", STATE / "key.pem"
SERVER_CPU, LOADGEN_CPU = "1", "0"
NOFILE = 20000


@dataclass(frozen=True)
class Target:
    """One server configuration of the matrix."""

    name: str  # "ngircd", "ngircd-nochan" (idle: no JOIN), "chat-t<N>", "base-t<N>", ...
    threads: int = 0
    exe: str = ""  # chat-server executable (chat targets)
    data: Path = STATE  # folder of its users file and key
    tls: bool = False
    store: bool = True  # False: --no-history

    @property
    def proto(self) -> str:
        return "irc" if self.is_irc else "chat"

    @property
    def is_irc(self) -> bool:
        return self.name.startswith("ngircd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, NOFILE), hard), hard))


def default_exe() -> str:
    return shutil.which("chat-server") or str(Path(sys.executable).parent / "chat-server")


def ensure_cert() -> None:
    """A self-signed pair for the TLS target, made once (valid 2 days; renewed within 1 h)."""
    if TLS_CERT.exists() and TLS_KEY.exists():
        check = ["openssl", "x509", "-checkend", "3600", "-noout", "-in", str(TLS_CERT)]
        if subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(TLS_KEY),
            "-out",
            str(TLS_CERT),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        capture_output=True,
        check=True,
    )
    TLS_KEY.chmod(0o600)


def history_file(target: Target) -> Path:
    return target.data / f"history-{target.name}.db"


def fresh_store(target: Target) -> list[str]:
    """The store options of a run, its file removed first (see the module docstring); a
    server that refuses to start on a lost store next to its accounts is told that this
    new, empty one is meant (`--new-history-store`, where the server has it)."""
    if not target.store:
        return ["--no-history"]
    path = history_file(target)
    for extra in ("", "-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    return ["--history-file", str(path), *_new_store_option(target.exe)]


_NEW_STORE: dict[str, list[str]] = {}


def _new_store_option(exe: str) -> list[str]:
    if exe not in _NEW_STORE:
        text = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
        _NEW_STORE[exe] = ["--new-history-store"] if "--new-history-store" in text else []
    return _NEW_STORE[exe]


def chat_server_cmd(target: Target, port: int, max_clients: int) -> list[str]:
    tls = ["--tls-cert", str(TLS_CERT), "--tls-key", str(TLS_KEY)] if target.tls else []
    store = fresh_store(target)
    return [
        target.exe,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(target.threads),
        "--rate-limit",
        "0",
        "--hash-cost",
        "10",
        "--log-level",
        "WARNING",
        "--users-file",
        str(target.data / "users.db"),
        "--key-file",
        str(target.data / "server.key"),
        "--max-clients",
        str(max_clients),
        "--idle-timeout",
        "0",
        "--ack-timeout",
        "600",
        *tls,
        *store,
    ]


def ngircd_cmd(port: int) -> list[str]:
    conf = STATE / f"ngircd-{port}.conf"
    text = NGIRCD_CONF.read_text().replace("Ports = 6667", f"Ports = {port}")
    text = text.replace("/tmp/ngircd-bench.pid", str(STATE / f"ngircd-{port}.pid"))
    conf.write_text(text)
    return ["ngircd", "--nodaemon", "--config", str(conf)]


@contextlib.contextmanager
def server(target: Target, max_clients: int = 12000) -> Iterator[tuple[int, int]]:
    """Start the server pinned to SERVER_CPU; yield (pid, port); stop it."""
    port = free_port()
    cmd = ngircd_cmd(port) if target.is_irc else chat_server_cmd(target, port, max_clients)
    log = open(STATE / f"{target.name}.log", "wb")  # noqa: SIM115 - closed below; last run only
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *cmd], stdout=log, stderr=log, preexec_fn=raise_nofile
    )
    try:
        wait_port(port, proc)
        time.sleep(0.3)  # let the start-up allocations settle before the RSS baseline
        yield proc.pid, port  # taskset execs the server: same pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def cpu_busy() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per core, to tell how much else ran on our cores."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            nums = [int(v) for v in vals]
            idle = nums[3] + nums[4]
            out[name] = (sum(nums[:8]) - idle, sum(nums[:8]))
    return out


def run_loadgen(target: Target, pid: int, port: int, args: list[str], timeout: float) -> dict:
    before = cpu_busy()
    cmd = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        str(LOADGEN),
        "--proto",
        target.proto,
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        *(["--tls"] if target.tls else []),
        *args,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile, check=False
    )
    after = cpu_busy()
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for core in ("cpu0", "cpu1"):
        busy = after[core][0] - before[core][0]
        total = max(after[core][1] - before[core][1], 1)
        result[f"{core}_busy_pct"] = round(100.0 * busy / total, 1)
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    if proc.stderr.strip():
        result["loadgen_stderr"] = proc.stderr.strip()[-500:]
    return result


_VERSIONS: dict[str, str] = {}


def server_version(exe: str) -> str:
    """The commit of src/ that `exe` runs: the git tree that holds its venv (an editable
    install here, or a worktree of an older commit with a venv of its own), "+dirty" if
    src/ differs from that commit now."""
    if exe in _VERSIONS:
        return _VERSIONS[exe]
    tree = next(
        (d for d in Path(exe).absolute().parents if (d / ".git").exists() and (d / "src").is_dir()),
        BENCH.parent,
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=tree, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    _VERSIONS[exe] = git("log", "-1", "--format=%h", "--", "src") + ("+dirty" if dirty else "")
    _VERSIONS["tree:" + exe] = git("rev-parse", "--short", "HEAD")
    return _VERSIONS[exe]


def record(out: Path, part: str, target: Target, rep: int, result: dict) -> None:
    result.update(part=part, server=target.name, rep=rep)
    if not target.is_irc:
        result.update(src_commit=server_version(target.exe), exe=target.exe)
        result.update(tree_commit=_VERSIONS["tree:" + target.exe])  # HEAD of that tree
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    brief = {
        k: result.get(k)
        for k in (
            "deliveries_per_s",
            "lost",
            "lat_p50_us",
            "lat_p99_us",
            "server_us_per_delivery",
            "loadgen_us_per_delivery",
            "server_vmhwm_kb",
            "rss_per_conn_kb",
            "cpu1_busy_pct",
        )
    }
    print(
        f"[{time.strftime('%H:%M:%S')}] {part} {target.name} C={result['clients']} "
        f"rep={rep}: {brief}",
        flush=True,
    )


ONLY: set[str] = set()  # --only: server names to run (empty = all); set once by main


def one(
    out: Path,
    part: str,
    target: Target,
    rep: int,
    args: list[str],
    timeout: float,
    max_clients: int = 12000,
) -> None:
    if ONLY and target.name not in ONLY:
        return
    try:
        with server(target, max_clients) as (pid, port):
            result = run_loadgen(target, pid, port, args, timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED {part} {target.name} rep={rep} {args}: {exc}", flush=True)
        result = {"error": str(exc)[-500:], "clients": int(args[args.index("--clients") + 1])}
    record(out, part, target, rep, result)


EXE = ""  # --exe; set once by main
BASE_EXE = ""  # --base-exe; "" = no base targets
TLS = False  # --tls
STORE_AB = False  # --store-ab


def chat_targets(t: int) -> list[Target]:
    """chat-t<N>, then (if asked) the same on the base executable and over TLS."""
    out = [Target(f"chat-t{t}", t, EXE)]
    if BASE_EXE:
        out.append(Target(f"base-t{t}", t, BASE_EXE, BASE_STATE))
    if STORE_AB:
        out.append(Target(f"nostore-t{t}", t, EXE, store=False))
    if TLS:
        out.append(Target(f"chat-tls-t{t}", t, EXE, tls=True))
    return out


def targets(threads: list[int]) -> list[Target]:
    return [Target("ngircd"), *(x for t in threads for x in chat_targets(t))]


def ensure_registered(count: int, data: Path, exe: str) -> None:
    """Create the bench users (b00000.., the loadgen's names and password) once per users
    file, at --hash-cost 10, in one durable write; later runs only log in. (Registering
    them through the server would write the whole users file once per group of
    registrations: about 20 minutes for 10,000, by design, see docs/store.md.)"""
    data.mkdir(mode=0o700, exist_ok=True)
    marker = data / "registered"
    have = int(marker.read_text()) if marker.exists() else 0
    if have >= count:
        return
    print(f"creating {count} bench users in {data} (once; reused across runs)...", flush=True)
    from chat.server.accounts.users_file import UserStore
    from chat.server.crypto.cipher import load_cipher
    from chat.server.crypto.keyfile import load_or_create_key

    key, _ = load_or_create_key(data / "server.key")
    store = UserStore.open(data / "users.db", key, load_cipher(), hash_cost_log2=10)
    store.register_many((f"b{i:05d}", "bench-password") for i in range(count))
    marker.write_text(str(count))


def main() -> int:
    global EXE, BASE_EXE, TLS, STORE_AB, SERVER_CPU, LOADGEN_CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="sat,satord,lat,idle")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", default="50,100,200")
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--lat-clients", type=int, default=200)
    ap.add_argument("--lat-rate", type=float, default=100.0)
    ap.add_argument("--lat-duration", type=float, default=10.0)
    ap.add_argument("--idle", default="2000,10000")
    ap.add_argument("--idle-reps", type=int, default=1)
    ap.add_argument(
        "--idle-join-max",
        type=int,
        default=2000,
        help="largest idle N for which IRC clients also JOIN #bench",
    )
    ap.add_argument("--only", default="", help="run only these servers, e.g. ngircd,chat-t4")
    ap.add_argument(
        "--exe", default="", help="chat-server to measure (default: the one on PATH / this venv)"
    )
    ap.add_argument(
        "--base-exe",
        default="",
        help="also run every chat target as base-t<N> with this chat-server (same run)",
    )
    ap.add_argument("--tls", action="store_true", help="also run chat-tls-t<N>: --exe over TLS")
    ap.add_argument(
        "--store-ab",
        action="store_true",
        help="also run nostore-t<N>: --exe with --no-history (the store's cost)",
    )
    ap.add_argument(
        "--server-cpus",
        default=SERVER_CPU,
        help="taskset list for the servers (default 1; '0,1' lets a server use both cores, "
        "shared with the loadgen)",
    )
    ap.add_argument("--loadgen-cpus", default=LOADGEN_CPU, help="taskset list for the loadgen")
    ap.add_argument("--out", type=Path, default=None)
    opts = ap.parse_args()
    ONLY.update(filter(None, opts.only.split(",")))
    SERVER_CPU, LOADGEN_CPU = opts.server_cpus, opts.loadgen_cpus
    EXE = str(Path(opts.exe).absolute()) if opts.exe else default_exe()
    BASE_EXE = str(Path(opts.base_exe).absolute()) if opts.base_exe else ""
    TLS = opts.tls
    STORE_AB = opts.store_ab

    subprocess.run(["make", "-s", "-C", str(LOADGEN.parent)], check=True)
    STATE.mkdir(mode=0o700, exist_ok=True)
    raise_nofile()
    parts = set(opts.parts.split(","))
    clients = [int(c) for c in opts.clients.split(",")]
    threads = [int(t) for t in opts.threads.split(",")]
    idle = [int(n) for n in opts.idle.split(",")] if "idle" in parts else []
    out = opts.out or BENCH / "results" / time.strftime("run-%Y%m%d-%H%M%S.jsonl")
    out.parent.mkdir(exist_ok=True)
    print(f"results -> {out}", flush=True)
    if TLS:
        ensure_cert()
    wanted = [t for t in targets(threads) if not t.is_irc and (not ONLY or t.name in ONLY)]
    for data, exe in dict.fromkeys((t.data, t.exe) for t in wanted):
        ensure_registered(max([*clients, opts.lat_clients, *idle]), data, exe)

    for rep in range(1, opts.reps + 1):
        if "sat" in parts:
            for c in clients:
                for t in targets(threads):
                    one(
                        out,
                        "sat",
                        t,
                        rep,
                        [
                            "--mode",
                            "window",
                            "--clients",
                            str(c),
                            "--senders",
                            str(c),
                            "--window",
                            str(opts.window),
                            "--quickack",
                            "--login-batch",
                            "10",
                            "--duration",
                            str(opts.duration),
                            "--warmup",
                            str(opts.warmup),
                        ],
                        300,
                    )
        if "satord" in parts:  # headroom check: ordinary clients cost the loadgen far less
            for t in targets(threads):
                one(
                    out,
                    "sat-ordinary",
                    t,
                    rep,
                    [
                        "--mode",
                        "window",
                        "--clients",
                        "200",
                        "--senders",
                        "200",
                        "--window",
                        str(opts.window),
                        "--login-batch",
                        "10",
                        "--duration",
                        str(opts.duration),
                        "--warmup",
                        str(opts.warmup),
                    ],
                    300,
                )
        if "lat" in parts:
            for quick in (False, True):
                for t in targets(threads):
                    one(
                        out,
                        "lat-quickack" if quick else "lat",
                        t,
                        rep,
                        [
                            "--mode",
                            "rate",
                            "--rate",
                            str(opts.lat_rate),
                            "--clients",
                            str(opts.lat_clients),
                            "--senders",
                            str(opts.lat_clients),
                            "--login-batch",
                            "10",
                            "--duration",
                            str(opts.lat_duration),
                            "--warmup",
                            str(opts.warmup),
                            *(["--quickack"] if quick else []),
                        ],
                        300,
                    )
    for rep in range(1, opts.idle_reps + 1):
        for n in idle:
            # ngIRCd slows down per JOIN as the channel grows (10,000 members in
            # #bench did not finish in 5 minutes), so large N are measured without it.
            irc = [Target("ngircd")] if n <= opts.idle_join_max else []
            for t in [*irc, Target("ngircd-nochan"), *chat_targets(max(threads))]:
                one(
                    out,
                    "idle",
                    t,
                    rep,
                    [
                        "--mode",
                        "idle",
                        "--clients",
                        str(n),
                        "--hold",
                        "3",
                        "--login-batch",
                        "64",
                        "--quickack",
                        "--src-count",
                        "8",
                        *(["--no-join"] if t.name == "ngircd-nochan" else []),
                    ],
                    3600,
                )
    print(summarize(out))
    return 0


def summarize(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from summary import render  # bench/summary.py: also usable on its own

    return render(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    os.chdir(BENCH.parent)
    sys.exit(main())
