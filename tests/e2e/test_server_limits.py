"""Running out of file descriptors: said at start, backed off at accept, recovered from."""

from __future__ import annotations

import time
from pathlib import Path

from wire import WireClient

PASSWORD = "pw"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in ticks


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

    # Free descriptors: the waiting connections get accepted. Enough of them that the
    # registration below also finds one for the users file's write (with only a few
    # free, under a loaded machine's timing, the write itself could meet EMFILE).
    for c in clients[:40]:
        c.close()
    late = clients[-1]
    late.send({"type": "auth", "user": "late", "password": PASSWORD, "register": True})
    answer = late.recv(timeout=15)
    assert answer["type"] == "auth_ok", (answer, server.log()[-3000:])
    assert server.proc.poll() is None
    for c in clients[40:]:
        c.close()
