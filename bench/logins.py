#!/usr/bin/env python3
"""Logins under attack: guessing one account's password from many addresses (and the owner
meanwhile), and a server full of connections that never log in (and a user arriving).

    python bench/logins.py rate --guessers 4 16 64 --seconds 60
    python bench/logins.py target              # the issue's target, about 4 minutes
    python bench/logins.py full                # 1,100 idle connections from 220 addresses
    python bench/logins.py target --out bench/results/logins-target-YYYYMMDD.json
    python bench/logins.py burst --users 10000 # 10,000 first logins, 64 in flight (issue 22)

Run by hand, not by the tests (the target takes minutes: 100 wrong passwords must take at
least 60 s). Each run starts a fresh `chat-server` with its defaults (scrypt cost 14, the
default throttle; `--server-arg` adds options) on a free loopback port. Guesser `i` speaks
from 127.0.0.(2 + i) (every 127.x address is the loopback on Linux), reconnects after
`too_many_attempts`, and waits 50 ms after a `rate_limited`. A wrong password counts once it
is answered `bad_credentials` or `too_many_attempts`: that is a password the server checked.

- `rate`: wrong passwords checked per second, for each number of guessers (the issue
  measured 2.6 / 8.8 / 25 per second for 4 / 16 / 64 before the account was serialised).
- `target`: 28 guessers until 100 wrong passwords are checked; the owner logs in with the
  right password from 127.0.0.200 every few seconds meanwhile. The issue's target: the 100
  take at least 60 s, and each of the owner's logins is answered within 5 s.
- `full`: `--max-clients` (default 1024) filled by 1,100 connections from 220 addresses
  (127.1.0.x) that never log in; then a user from 127.0.0.250 registers: how long until its
  `auth_ok`, and how many tries (a `server_full` is a try; the next one follows at once).
- `burst`: a login storm, not an attack: `--users` accounts (default 10,000) log in with
  their passwords right after a start, `--in-flight` at a time (default 64), at
  `--hash-cost 10`, until every one is in CHAT (bench/tokens.py's server and loadgen).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

VICTIM, PASSWORD = "victim", "the right password"
CHECKED = {"bad_credentials", "too_many_attempts"}


# --- the wire (protocol v1: a 4-byte big-endian length, then JSON) -----------------------
class Peer:
    """A blocking client bound to one source address."""

    def __init__(self, port: int, source: str, timeout: float = 120.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def recv(self) -> dict[str, Any]:
        (length,) = struct.unpack(">I", self._read(4))
        return json.loads(self._read(length))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        self.sock.close()


def auth(password: str, register: bool = False) -> dict[str, Any]:
    return {"type": "auth", "user": VICTIM, "password": password, "register": register}


# --- the server ---------------------------------------------------------------------------
class Server:
    def __init__(self, folder: Path, extra: list[str]) -> None:
        self.log = folder / "server.log"
        cmd = [sys.executable, "-m", "chat.server", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--data-dir", str(folder / "data"), "--log-file", str(self.log), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.log.exists() and (m := re.search(r"listening on \S+ port (\d+)", self.text())):
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.05)
        raise SystemExit("server did not start")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


# --- guessers -----------------------------------------------------------------------------
class Attack:
    def __init__(self, port: int, guessers: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.checked: list[float] = []  # monotonic time of each answered wrong password
        self.refused = 0  # rate_limited answers
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._guess, args=(f"127.0.0.{2 + i}",), daemon=True)
            for i in range(guessers)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(150)

    def _guess(self, source: str) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                peer = Peer(self.port, source)
            except OSError:
                time.sleep(0.1)
                continue
            try:
                while not self.stop.is_set():
                    n += 1
                    peer.send(auth(f"guess {source} {n}"))
                    code = peer.recv().get("code")
                    with self.lock:
                        if code in CHECKED:
                            self.checked.append(time.monotonic())
                        elif code == "rate_limited":
                            self.refused += 1
                    if code == "rate_limited":
                        time.sleep(0.05)
                    elif code != "bad_credentials":
                        break
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.05)
            finally:
                peer.close()


def register(port: int) -> None:
    peer = Peer(port, "127.0.0.200")
    peer.send(auth(PASSWORD, register=True))
    assert peer.recv()["type"] == "auth_ok"
    peer.close()


def owner_login(port: int) -> float:
    """Seconds from the owner's auth to its auth_ok (from 127.0.0.200)."""
    peer = Peer(port, "127.0.0.200")
    start = time.monotonic()
    peer.send(auth(PASSWORD))
    answer = peer.recv()
    took = time.monotonic() - start
    peer.close()
    if answer.get("type") != "auth_ok":
        raise SystemExit(f"the owner was refused: {answer}")
    return took


def run_rate(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for guessers in args.guessers:
        with tempfile.TemporaryDirectory(prefix="login-bench-") as tmp:
            server = Server(Path(tmp), args.server_arg)
            try:
                register(server.port)
                attack = Attack(server.port, guessers)
                started = time.monotonic()
                attack.start()
                time.sleep(args.seconds)
                ended = time.monotonic()
                attack.join()
                # Steady state: past the first 10 s (the free failures and the ramp).
                steady = [t for t in attack.checked if started + 10 <= t <= ended]
                checked = sum(t <= ended for t in attack.checked)
                row = {
                    "guessers": guessers,
                    "seconds": round(ended - started, 1),
                    "checked": checked,
                    "per_second": round(checked / (ended - started), 2),
                    "per_second_after_10s": round(len(steady) / (ended - started - 10), 2),
                    "rate_limited": attack.refused,
                }
            finally:
                server.stop()
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def run_target(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="login-bench-") as tmp:
        server = Server(Path(tmp), args.server_arg)
        try:
            register(server.port)
            attack = Attack(server.port, args.guessers)
            started = time.monotonic()
            attack.start()
            owner: list[float] = []
            next_login = started + 5
            while len(attack.checked) < args.wrong and time.monotonic() - started < 900:
                if time.monotonic() >= next_login:
                    owner.append(owner_login(server.port))
                    print(
                        f"  {time.monotonic() - started:6.1f}s: {len(attack.checked)} wrong "
                        f"checked, the owner logged in in {owner[-1]:.3f}s",
                        flush=True,
                    )
                    next_login = time.monotonic() + args.owner_every
                time.sleep(0.01)
            with attack.lock:
                times = sorted(attack.checked)
            attack.join()
        finally:
            server.stop()
    took = times[args.wrong - 1] - started if len(times) >= args.wrong else None
    gaps = [b - a for a, b in itertools.pairwise(times[: args.wrong])]
    result = {
        "guessers": args.guessers,
        "wrong": args.wrong,
        "seconds_for_wrong": None if took is None else round(took, 1),
        "owner_logins": len(owner),
        "owner_max_s": round(max(owner), 3) if owner else None,
        "owner_median_s": round(statistics.median(owner), 3) if owner else None,
        "smallest_gap_after_10_s": round(min(gaps[10:]), 3) if len(gaps) > 10 else None,
        "rate_limited": attack.refused,
        "target_met": took is not None and took >= 60 and bool(owner) and max(owner) <= 5,
    }
    print(json.dumps(result), flush=True)
    return result


def run_full(args: argparse.Namespace) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="login-bench-") as tmp:
        server = Server(Path(tmp), args.server_arg)
        idle: list[socket.socket] = []
        try:
            for i in range(args.idle):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((f"127.1.0.{1 + i % args.addresses}", 0))
                sock.connect(("127.0.0.1", server.port))
                idle.append(sock)
            time.sleep(2.0)  # the server has accepted (or refused) them all
            started = time.monotonic()
            tries = 0
            while True:
                tries += 1
                peer = Peer(server.port, "127.0.0.250", timeout=30)
                peer.send({"type": "auth", "user": "late", "password": PASSWORD, "register": True})
                try:
                    answer = peer.recv()
                except ConnectionError:
                    answer = {"closed": True}
                peer.close()
                if answer.get("type") == "auth_ok" or time.monotonic() - started > 120:
                    break
                time.sleep(0.1)
            took = time.monotonic() - started
            log = server.text()
        finally:
            for sock in idle:
                sock.close()
            server.stop()
    result = {
        "idle": args.idle,
        "addresses": args.addresses,
        "logged_in": answer.get("type") == "auth_ok",
        "tries": tries,
        "seconds": round(took, 3),
        "evicted": log.count("evicting "),
        "refused_server_full": log.count("rejected "),
    }
    print(json.dumps(result), flush=True)
    return result


def run_burst(args: argparse.Namespace) -> dict[str, Any]:
    """N first logins after a start, with passwords, `--in-flight` at a time, until each is
    in CHAT: the login storm of issue 22's "10,000 first logins, --hash-cost 10" (bench/
    tokens.py's accounts, server and loadgen: server on core 1, loadgen on core 0)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tokens  # bench/tokens.py

    if not tokens.LOADGEN.exists():
        subprocess.run(["make", "-s", "-C", str(tokens.LOADGEN.parent)], check=True)
    report: dict[str, Any] = {"users": args.users, "in_flight": args.in_flight}
    report["machine"] = tokens.machine()
    with tempfile.TemporaryDirectory(prefix="login-burst-") as tmp:
        folder = Path(tmp)
        report["accounts_made_s"] = round(tokens.make_accounts(folder, args.users), 1)
        server = tokens.Server(folder, args.users, args.server_arg)
        server.start("--new-history-store")  # accounts made by hand: no message store yet
        assert server.proc is not None
        spy = None
        if args.profile is not None:  # py-spy on the loadgen's core, as tokens.py --profile
            record = ["record", "--pid", str(server.proc.pid), "--format", "raw", "--threads"]
            record += ["--rate", "100", "--nonblocking", "--output", str(args.profile)]
            spy_exe = str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                ["taskset", "-c", tokens.LOADGEN_CPU, spy_exe, *record],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached
        before = tokens.thread_ticks(server.proc.pid)
        got = tokens.loadgen(server.port, server.proc.pid, args.users, args.in_flight)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        got["server_threads_cpu_s"] = tokens.threads_cpu(
            before, tokens.thread_ticks(server.proc.pid)
        )
        report["logins"] = got
        server.stop()
    report["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    report["target"] = {"all_in_chat_s": got["login_s"], "all_in_chat_target_s": 45.0}
    print(json.dumps(report, indent=2), flush=True)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["rate", "target", "full", "burst"])
    ap.add_argument("--guessers", type=int, nargs="+", default=None)
    ap.add_argument("--seconds", type=float, default=30.0, help="rate: each measurement")
    ap.add_argument("--wrong", type=int, default=100, help="target: wrong passwords to wait for")
    ap.add_argument("--owner-every", type=float, default=8.0, help="target: seconds between logins")
    ap.add_argument("--idle", type=int, default=1100, help="full: connections that never log in")
    ap.add_argument("--addresses", type=int, default=220, help="full: their source addresses")
    ap.add_argument("--users", type=int, default=10_000, help="burst: accounts that log in")
    ap.add_argument("--in-flight", type=int, default=64, help="burst: logins at a time")
    ap.add_argument("--profile", type=Path, default=None, help="burst: py-spy raw stacks here")
    ap.add_argument("--server-arg", action="append", default=[], help="one more server option")
    ap.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = ap.parse_args()
    if args.what == "rate":
        args.guessers = args.guessers or [4, 16, 64]
        out: Any = run_rate(args)
    elif args.what == "target":
        args.guessers = (args.guessers or [28])[0]
        out = run_target(args)
    elif args.what == "burst":
        out = run_burst(args)
    else:
        out = run_full(args)
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
