#!/usr/bin/env python3
"""Where an idle connection's memory goes: tracemalloc in a real server, by source line.

    .venv/bin/python bench/idle_memory.py --clients 2000 --features rooms,read,echo,typing
    .venv/bin/python bench/idle_memory.py --clients 2000 --features ''

Runs chat-server in this process (its own entry point, a temporary data folder, a
loopback port, `--hash-cost 10`) with tracemalloc on, logs N clients in with the C
loadgen (`--mode idle`, asking for FEATURES), and once all are in CHAT compares a
snapshot with the one taken before the first connect: the bytes each source line
holds more, per connection, biggest first. Python's allocations only (tracemalloc
does not see the native slots or the kernel's socket buffers): the part of the RSS
per connection that a feature can add in Python. bench/README.md, "Rooms (issue 19)".
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run  # noqa: E402


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--features", default="rooms,read,echo,typing")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--rss",
        action="store_true",
        help="no tracemalloc: VmRSS per connection, then again after glibc's malloc_trim(0) "
        "(free memory the allocator kept, given back)",
    )
    opts = ap.parse_args()
    from chat.server.ops.cli import main as server_main

    run.raise_nofile()
    run.ensure_registered(opts.clients, run.STATE, run.default_exe())
    if not opts.rss:
        tracemalloc.start(1)
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "server.log"
        port = run.free_port()

        def drive() -> None:
            try:
                deadline = time.monotonic() + 180
                while "listening on" not in (log_file.read_text() if log_file.exists() else ""):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not start")
                    time.sleep(0.1)
                time.sleep(1.0)
                rss0 = _rss_kb()
                before = None if opts.rss else tracemalloc.take_snapshot()
                cmd = [str(run.LOADGEN), "--proto", "chat", "--port", str(port), "--mode"]
                cmd += ["idle", "--clients", str(opts.clients), "--hold", "8", "--verbose"]
                cmd += ["--login-batch", "64", "--src-count", "8"]
                if opts.features:
                    cmd += ["--features", opts.features]
                gen = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                assert gen.stderr is not None
                for line in gen.stderr:
                    if "clients ready" in line:
                        break
                time.sleep(2.0)
                n = opts.clients
                if opts.rss:
                    rss1 = _rss_kb()
                    ctypes.CDLL("libc.so.6").malloc_trim(0)
                    rss2 = _rss_kb()
                    gen.wait(120)
                    out.append(
                        f"features={opts.features!r} clients={n}: RSS {rss0} -> {rss1} KB, "
                        f"{(rss1 - rss0) / n:.2f} KB each; after malloc_trim(0) {rss2} KB, "
                        f"{(rss2 - rss0) / n:.2f} KB each"
                    )
                    return
                after = tracemalloc.take_snapshot()
                gen.wait(120)
                assert before is not None
                diff = after.compare_to(before, "lineno")
                total = sum(d.size_diff for d in diff)
                out.append(
                    f"features={opts.features!r} clients={n}: Python heap +{total / n:.0f} B each"
                )
                for d in diff[: opts.top]:
                    frame = d.traceback[0]
                    where = re.sub(r".*/site-packages/|.*/src/", "", frame.filename)
                    each, blocks = d.size_diff / n, d.count_diff / n
                    out.append(f"{each:8.1f} B {blocks:6.2f} blocks  {where}:{frame.lineno}")
            except Exception as exc:  # the report says what went wrong
                out.append(f"failed: {exc!r}")
                print(out[-1], file=sys.stderr, flush=True)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=drive, name="driver", daemon=True).start()
        args = ["--host", "127.0.0.1", "--port", str(port), "--hash-cost", "10", "--threads", "4"]
        args += [
            "--users-file",
            str(run.STATE / "users.db"),
            "--key-file",
            str(run.STATE / "server.key"),
        ]
        args += ["--history-file", str(Path(tmp) / "history.db"), "--new-history-store"]
        args += ["--log-file", str(log_file), "--idle-timeout", "0", "--rate-limit", "0"]
        args += ["--max-clients", str(opts.clients + 100)]
        server_main(args)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
