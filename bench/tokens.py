#!/usr/bin/env python3
"""A restart's reconnect storm with tokens (issue "6 of 6", protocol v1.2 `resume`).

    python bench/tokens.py                          # 10,000 users (about 3 minutes)
    python bench/tokens.py --users 2000 --passwords # smaller, and the same with passwords
    python bench/tokens.py --out bench/results/tokens-YYYYMMDD.json

1. N accounts are made in the users file before the server starts (one write;
   `--hash-cost 10`, the cheapest the server takes, as the other login benches).
2. The server starts; the C loadgen (bench/loadgen, `--resume-out`) logs every user in with
   its password, asking for `resume`, and keeps the N tokens: N users logged in.
3. The server is stopped (SIGTERM: every client gets `bye`) and started again on the same
   files; then all N reconnect with their tokens (loadgen `--tokens`), at most
   `--login-batch` logins in flight (default: all of them at once, a storm). Measured: the
   time from the first connect until every client is in CHAT (its first `roster_ack`
   answered: the pong of a ping sent after it), and the server's CPU (utime + stime from
   /proc, sampled by the loadgen) over that time, per login.
4. `--passwords`: the same reconnect after another restart with passwords (one scrypt each
   at cost 10): what tokens save.

The server runs pinned to one core and the loadgen to the other (taskset), as
bench/run.py does; the server's `--hash-threads` follows its core count (one). Targets
(issue 22): all back in CHAT within 20 s, server CPU per token login at most 300 us. Also
measured in this process: one `Tokens.check` (the HMAC itself), for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / "loadgen" / "loadgen"
SERVER_CPU, LOADGEN_CPU = "1", "0"
PASSWORD = "bench-password"
PREFIX = "t"
NOFILE = 20000


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(NOFILE, hard) if hard != resource.RLIM_INFINITY else NOFILE
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def make_accounts(folder: Path, users: int) -> float:
    """The N accounts in a new users file (the names the loadgen uses); seconds taken."""
    from chat.server.accounts.users_file import UserStore
    from chat.server.crypto.cipher import load_cipher
    from chat.server.crypto.keyfile import load_or_create_key

    started = time.monotonic()
    key, _ = load_or_create_key(folder / "server.key")
    store = UserStore(folder / "users.db", key, load_cipher(None), hash_cost_log2=10)
    made = store.register_many((f"{PREFIX}{i:05d}", PASSWORD) for i in range(users))
    assert made == users, made
    return time.monotonic() - started


class Server:
    def __init__(self, folder: Path, users: int, extra: list[str]) -> None:
        self.folder = folder
        self.log = folder / "server.log"
        self.args = [
            "taskset",
            "-c",
            SERVER_CPU,
            sys.executable,
            "-m",
            "chat.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(folder),
            "--hash-cost",
            "10",
            "--max-clients",
            str(users + 256),
            "--max-unauth-per-addr",
            "0",
            "--log-file",
            str(self.log),
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, *once: str) -> None:
        self.log.unlink(missing_ok=True)
        # WARNING hides "listening on": the port is read from the process' socket instead.
        self.proc = subprocess.Popen(
            [*self.args, *once],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=raise_nofile,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err}")
            port = listening_port(self.proc.pid)
            if port:
                self.port = port
                return
            time.sleep(0.05)
        raise RuntimeError("the server did not listen within 60 s")

    def stop(self) -> float:
        """SIGTERM; seconds until it exited (every client gets `bye` first)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        if code != 0:
            raise RuntimeError(f"server exited with {code}")
        return time.monotonic() - started


def listening_port(pid: int) -> int:
    """The TCP port a process listens on (from /proc/net/tcp and its fds), 0 when none yet."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
            found = re.fullmatch(r"socket:\[(\d+)\]", with_target)
            if found:
                inodes.add(found.group(1))
    except OSError:
        return 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            return int(fields[1].split(":")[1], 16)
    return 0


def loadgen(port: int, pid: int, users: int, batch: int, *extra: str) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        str(LOADGEN),
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        "--mode",
        "idle",
        "--hold",
        "0",
        "--clients",
        str(users),
        "--prefix",
        PREFIX,
        "--password",
        PASSWORD,
        "--login-batch",
        str(batch),
        "--login-timeout",
        "900",
        "--src-count",
        "64",
        *extra,
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1200, preexec_fn=raise_nofile, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    keep = ("login_s", "login_server_cpu_s", "login_retries", "errors", "closed", "reconnects")
    out = {k: result[k] for k in keep}
    out["server_rss_kb"] = result["server_rss_kb"]
    out["loadgen_cpu_s"] = result["loadgen_cpu_s"]
    out["server_us_per_login"] = round(result["login_server_cpu_s"] * 1e6 / users, 1)
    return out


def thread_ticks(pid: int) -> dict[str, int]:
    """utime + stime of each thread of `pid`, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out[task.name] = int(fields[11]) + int(fields[12])
    return out


def threads_cpu(before: dict[str, int], after: dict[str, int]) -> list[float]:
    """CPU seconds of each thread over the interval, the busiest first (threads have no OS
    names here: with --profile, py-spy tells which is which)."""
    hz = os.sysconf("SC_CLK_TCK")
    spent = [(after[t] - before.get(t, 0)) / hz for t in after]
    return sorted((round(s, 2) for s in spent if s > 0), reverse=True)


def token_check_us(rounds: int = 100_000) -> float:
    """One `Tokens.check` of a good token, in this process: the HMAC and the parse."""
    from chat.server.accounts.tokens import Tokens

    tokens = Tokens(os.urandom(32))
    nonce = os.urandom(16)
    token = tokens.issue("t00042", nonce)
    started = time.process_time()
    for _ in range(rounds):
        tokens.check(token, "t00042", nonce)
    return (time.process_time() - started) * 1e6 / rounds


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--login-batch", type=int, default=0, help="logins in flight at once (0: all of them)"
    )
    parser.add_argument("--passwords", action="store_true", help="also reconnect with passwords")
    parser.add_argument("--server-arg", action="append", default=[], help="one more option")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="py-spy (raw stacks, threads apart) of the server during the token reconnect",
    )
    args = parser.parse_args()
    if not LOADGEN.exists():
        subprocess.run(["make", "-s", "-C", str(LOADGEN.parent)], check=True)
    users, batch = args.users, args.login_batch or args.users
    report: dict[str, Any] = {"users": users, "login_batch": batch, "machine": machine()}
    report["token_check_us"] = round(token_check_us(), 2)
    with tempfile.TemporaryDirectory(prefix="chat-tokens-") as tmp:
        folder = Path(tmp)
        report["accounts_made_s"] = round(make_accounts(folder, users), 1)
        tokens = folder / "tokens.txt"
        server = Server(folder, users, args.server_arg)
        server.start("--new-history-store")  # accounts made by hand: no message store yet
        assert server.proc is not None
        print(f"first logins with passwords ({users}) ...", file=sys.stderr)
        report["first_logins_passwords"] = loadgen(
            server.port, server.proc.pid, users, min(batch, 200), "--resume-out", str(tokens)
        )
        assert len(tokens.read_text().splitlines()) == users
        report["stop_s"] = round(server.stop(), 2)
        server.start()
        assert server.proc is not None
        print(f"reconnect with tokens ({users}) ...", file=sys.stderr)
        spy = None
        if args.profile is not None:
            spy_exe = str(Path(sys.executable).parent / "py-spy")
            record = ["record", "--pid", str(server.proc.pid), "--format", "raw", "--threads"]
            record += ["--rate", "200", "--nonblocking", "--output", str(args.profile)]
            spy = subprocess.Popen(
                ["taskset", "-c", LOADGEN_CPU, spy_exe, *record],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached
        threads0 = thread_ticks(server.proc.pid)
        report["reconnect_tokens"] = loadgen(
            server.port, server.proc.pid, users, batch, "--tokens", str(tokens)
        )
        report["reconnect_tokens"]["server_threads_cpu_s"] = threads_cpu(
            threads0, thread_ticks(server.proc.pid)
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if args.passwords:
            server.stop()
            server.start()
            assert server.proc is not None
            print(f"reconnect with passwords ({users}) ...", file=sys.stderr)
            report["reconnect_passwords"] = loadgen(server.port, server.proc.pid, users, batch)
        server.stop()
        report["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        leaked = [p.name for p in folder.iterdir() if p.is_file() and p.name != "tokens.txt"]
        for name in leaked:  # what the server wrote: never a token
            data = (folder / name).read_bytes()
            for line in tokens.read_text().splitlines()[:200]:
                assert line.split()[1].encode() not in data, name
    got = report["reconnect_tokens"]
    report["targets"] = {
        "all_in_chat_s": got["login_s"],
        "all_in_chat_target_s": 20.0,
        "server_us_per_token_login": got["server_us_per_login"],
        "server_us_per_token_login_target": 300.0,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
