"""A real redis-server on a free loopback port, and chat-server nodes joined to it.

Never a mock: Debian's `redis-server` (installed by .ci/run), started here with
no persistence unless a test asks for it, stopped by PID. The nodes are real
`chat-server` processes (tests/conftest.py `launch`) sharing one key file.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import ServerProc, launch

REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProc:
    folder: Path
    port: int
    extra: tuple[str, ...] = ()
    password: str | None = None
    tls_port: int | None = None  # a TLS-only redis answers here (its --port is 0)
    tls_ca: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls_port is not None:
            return redis.Redis(
                host="127.0.0.1", port=self.tls_port, ssl=True, ssl_ca_certs=self.tls_ca
            )
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        args = [
            REDIS or "redis-server",
            "--port",
            str(self.port if self.tls_port is None else 0),  # TLS only: no plain port
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProc]]:
    if REDIS is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI does)")
    started: list[RedisProc] = []

    def start(
        *extra: str,
        password: str | None = None,
        tls_port: int | None = None,
        tls_ca: str | None = None,
    ) -> RedisProc:
        folder = tmp_path / f"redis{len(started)}"
        folder.mkdir()
        r = RedisProc(folder, tls_port or free_port(), tuple(extra), password, tls_port, tls_ca)
        r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop(signal.SIGKILL)


@pytest.fixture
def redis_server(start_redis: Callable[..., RedisProc]) -> RedisProc:
    return start_redis()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    """A node of the cluster at `url`; every node of a test shares the key file."""
    started: list[ServerProc] = []

    def start(url: str, *extra: str, **kw: object) -> ServerProc:
        node = launch(
            tmp_path,
            "--cluster",
            url,
            *extra,
            log_name=f"node{len(started)}.log",
            **kw,  # type: ignore[arg-type]
        )
        started.append(node)
        return node

    yield start
    for node in started:
        for c in node.clients:
            c.close()
        node.stop(signal.SIGKILL if node.proc.poll() is None else signal.SIGTERM)


@pytest.fixture
def three(redis_server: RedisProc, start_node: Callable[..., ServerProc]) -> list[ServerProc]:
    return [start_node(redis_server.url) for _ in range(3)]


@pytest.fixture
def pair(
    tmp_path: Path, redis_server: RedisProc
) -> Iterator[tuple[ServerProc, ServerProc, Callable[..., Any]]]:
    """Two nodes, each with a data folder (and control socket) of its own, one key file; and
    `cli(node or folder, *words)`: the real `chat-server` command given to that folder."""
    key = tmp_path / "cluster.key"
    nodes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        nodes.append(launch(folder, "--cluster", redis_server.url, key_file=key))

    def cli(folder: Path | ServerProc, *words: str, stdin: str = "") -> Any:
        where = folder.users_file.parent if isinstance(folder, ServerProc) else folder
        where.mkdir(exist_ok=True)
        args = [sys.executable, "-m", "chat.server", *words, "--cluster", redis_server.url]
        args += ["--key-file", str(key), "--hash-cost", "10"]
        return subprocess.run(
            args, cwd=where, input=stdin, capture_output=True, text=True, timeout=60
        )

    yield nodes[0], nodes[1], cli
    for node in nodes:
        for c in node.clients:
            c.close()
        node.stop()
