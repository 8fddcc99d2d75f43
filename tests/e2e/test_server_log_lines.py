"""Lines an operator reads: the start-up line, a port in use, the peers' addresses.

Each was a small wart: `host=,` for every interface, a Python tuple in the
port-in-use message, and IPv4 peers shown as `::ffff:127.0.0.1` on the
dual-stack port.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from server_support import online

SERVER = [sys.executable, "-m", "chat.server"]


def _starting(log: str) -> str:
    return next(line for line in log.splitlines() if " starting: " in line)


def test_every_interface_is_host_star_in_the_start_line(start_server) -> None:
    server = start_server("--host", "")
    line = _starting(server.log())
    assert "host=*, port=0," in line, line
    assert "host=," not in line


def test_a_named_host_is_shown_as_given(start_server) -> None:
    server = start_server()
    assert "host=127.0.0.1, port=0," in _starting(server.log())


@pytest.mark.parametrize("host", ["127.0.0.1", ""])
def test_a_port_in_use_is_one_plain_line(tmp_path: Path, host: str) -> None:
    family = socket.AF_INET6 if host == "" and socket.has_dualstack_ipv6() else socket.AF_INET
    busy = socket.create_server(
        ("::" if family == socket.AF_INET6 else "127.0.0.1", 0), family=family
    )
    port = busy.getsockname()[1]
    try:
        result = subprocess.run(
            [*SERVER, "--host", host, "--port", str(port), "--log-file", str(tmp_path / "log")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        busy.close()
    assert result.returncode == 1, result
    shown = host or "*"
    assert result.stderr == (
        f"chat-server: cannot listen on {shown}:{port}: {os.strerror(errno.EADDRINUSE)}\n"
    )


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack IPv6 socket here")
def test_ipv4_peers_on_the_dual_stack_port_are_logged_as_plain_ipv4(start_server) -> None:
    server = start_server("--host", "")  # "::" with IPV6_V6ONLY off: IPv4 arrives mapped
    online(server, "alice").close()
    log = server.log()
    assert "::ffff:" not in log, log
    accepted = [line for line in log.splitlines() if " accepted fd=" in line]
    assert accepted and all(re.search(r"peer=127\.0\.0\.1:\d+ ", line) for line in accepted)
