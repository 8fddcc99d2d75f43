"""Running released one-file binaries the way a user does, for the release tests.

Every program is started through ``env -i`` with only the variables given, so
nothing from the test's Python environment leaks in (no PATH to a Python, no
PYTHONPATH, no virtualenv).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

STARTUP_LIMIT = 30.0  # seconds; a one-file binary unpacks itself first
_LISTENING = re.compile(r"listening on \S+ port (\d+)")


@dataclass(frozen=True)
class Release:
    """One target folder written by scripts/release.sh."""

    folder: Path
    sums: dict[str, str]  # relative path -> sha256 hex, from SHA256SUMS

    @property
    def version(self) -> str:
        return self.folder.parent.name

    @property
    def target(self) -> str:
        return self.folder.name

    def binary(self, flavour: str, program: str) -> Path:
        return self.folder / flavour / program


def read_release(folder: Path) -> Release:
    sums = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    return Release(folder, sums)


def clean_env(path: str, **extra: str) -> list[str]:
    """The ``env -i`` prefix: an empty environment plus PATH and the extras."""
    return ["/usr/bin/env", "-i", f"PATH={path}", *(f"{k}={v}" for k, v in extra.items())]


def wait_for(check: Callable[[], Any], what: str, limit: float = STARTUP_LIMIT) -> Any:
    """Poll until check() returns something truthy; fail with WHAT after LIMIT s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class ServerRun:
    """A chat-server binary on a free loopback port, logging to a file."""

    def __init__(self, prefix: Sequence[str], binary: str, folder: Path, host_folder: Path) -> None:
        """PREFIX runs the binary (env -i, maybe chroot); FOLDER is as the server sees
        its working folder, HOST_FOLDER the same folder as the test sees it."""
        self.log_path = host_folder / "server.log"
        self.host_folder = host_folder
        command = [
            *prefix,
            binary,
            "--host", "127.0.0.1",
            "--port", "0",
            "--hash-cost", "10",
            "--users-file", f"{folder}/users.db",
            "--key-file", f"{folder}/server.key",
            "--log-file", f"{folder}/server.log",
            # Not the default ./history.db: that would land in the test's working
            # folder (the checkout) and belong to another run's key.
            "--history-file", f"{folder}/history.db",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = int(wait_for(self._port, "the server to listen"))

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()}")
        found = _LISTENING.search(self.log())
        return found.group(1) if found else None

    def stop(self) -> int:
        """SIGTERM (the bootloader passes it on) and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STARTUP_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


class LineClient:
    """A chat-client binary in line mode with JSON output, read line by line."""

    def __init__(self, command: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            [*command, "--no-tui", "--json"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self.events.put(json.loads(line))

    def expect(self, event: str, limit: float = STARTUP_LIMIT) -> dict[str, Any]:
        """The next event of that kind (others are kept in .seen)."""
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} event; seen {self.seen}")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(item)
            if item.get("event") == event:
                return item

    def finish(self, text: str = "") -> tuple[int, str]:
        """Send the last lines, close stdin (EOF ends line mode), return (code, stderr)."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        if text:
            self.proc.stdin.write(text)
        self.proc.stdin.close()
        code = self.proc.wait(timeout=STARTUP_LIMIT)
        return code, self.proc.stderr.read()
