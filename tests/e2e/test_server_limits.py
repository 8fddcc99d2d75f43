"""Running out of file descriptors: said at start, backed off at accept, recovered from."""

from __future__ import annotations

import os
import time
from pathlib import Path

from server_support import wait_for

from wire import WireClient

PASSWORD = "pw"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in ticks


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_log(server, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (log := server.log()):
        assert time.monotonic() < deadline, f"{needle!r} not in log:\n{log[-2000:]}"
        time.sleep(0.05)
    return log


def test_max_clients_beyond_the_open_file_limit_is_reported_at_start(start_server) -> None:
    server = start_server("--max-clients", "5000", fd_limit=64)
    wait_log(server, "--max-clients 5000 does not fit in the open-file limit 64")


def test_accept_out_of_descriptors_backs_off_without_spinning_and_recovers(start_server) -> None:
    server = start_server("--max-clients", "1000", fd_limit=40)
    clients = [WireClient(server.host, server.port) for _ in range(50)]  # more than fit
    wait_log(server, "Too many open files; pausing accepts")

    before = cpu_seconds(server.proc.pid)
    time.sleep(2.0)
    used = cpu_seconds(server.proc.pid) - before
    assert used < 1.0, f"the server burned {used:.2f}s of CPU in 2s while out of descriptors"

    # Free descriptors: the waiting connections get accepted. The listen backlog refills
    # the freed slots at once, the closed ones among it too until the server reads their
    # EOF: the last in the backlog answers a ping once it is drained, and the closed
    # ones then go, leaving the registration below descriptors for the users file's write
    # (sent at once, it met EMFILE while every slot still held a dead connection).
    for c in clients[:40]:
        c.close()
    late = clients[-1]
    late.send({"type": "ping"})
    assert late.recv(timeout=15)["type"] == "pong"
    assert wait_for(lambda: open_fds(server.proc.pid) <= 40 - 8, 15), server.log()[-3000:]
    late.send({"type": "auth", "user": "late", "password": PASSWORD, "register": True})
    answer = late.recv(timeout=15)
    assert answer["type"] == "auth_ok", (answer, server.log()[-3000:])
    assert server.proc.poll() is None
    for c in clients[40:]:
        c.close()
