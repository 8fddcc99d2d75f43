"""Fixtures that start the real `chat-server` on a free loopback port."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/wire.py

from wire import WireClient

if TYPE_CHECKING:
    from e2e.tui_support import Tmux

_LISTENING = re.compile(r"listening on \S+ port (\d+)")


@dataclass
class ServerProc:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    users_file: Path
    key_file: Path
    log_path: Path
    clients: list[WireClient] = field(default_factory=list)

    def client(self) -> WireClient:
        c = WireClient(self.host, self.port)
        self.clients.append(c)
        return c

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def server_command() -> list[str]:
    return [sys.executable, "-m", "chat.server"]


def launch(
    folder: Path,
    *extra: str,
    users_file: Path | None = None,
    key_file: Path | None = None,
    log_name: str = "server.log",
    wait: bool = True,
    fd_limit: int | None = None,
) -> ServerProc:
    users = users_file or folder / "users.db"
    key = key_file or folder / "server.key"
    log_path = folder / log_name
    args = [
        *server_command(),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--hash-cost",
        "10",
        "--users-file",
        str(users),
        "--key-file",
        str(key),
        "--log-file",
        str(log_path),
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def limit_fds() -> None:  # runs in the child, before exec
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    proc = subprocess.Popen(
        args,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit_fds,
    )
    server = ServerProc(proc, "127.0.0.1", 0, users, key, log_path)
    if wait:
        server.port = _wait_port(server)
    return server


def _wait_port(server: ServerProc, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log_path.exists() and (m := _LISTENING.search(server.log())):
            return int(m.group(1))
        if server.proc.poll() is not None:
            err = server.proc.stderr.read().decode() if server.proc.stderr else ""
            raise RuntimeError(f"server exited with {server.proc.returncode}: {err}")
        time.sleep(0.02)
    raise RuntimeError("server did not start listening")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    started: list[ServerProc] = []

    def start(*extra: str, **kw: object) -> ServerProc:
        server = launch(tmp_path, *extra, log_name=f"server{len(started)}.log", **kw)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    stop_servers(started)


def stop_servers(started: list[ServerProc]) -> None:
    """A fixture's servers at its end: their clients closed, each stopped (killed if it
    still runs: the test is over, nothing of its shutdown is being judged)."""
    for server in started:
        for c in server.clients:
            c.close()
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)


@pytest.fixture
def server(start_server: Callable[..., ServerProc]) -> ServerProc:
    return start_server()


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    """A tmux server of the test's own for the TUI tests (tests/e2e/tui_support.py),
    killed after the test."""
    from e2e.tui_support import Tmux

    t = Tmux(tmp_path)
    yield t
    t.kill()
