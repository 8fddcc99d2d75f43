"""The TUI tests' terminal: one tmux server of the test's own, one pane running the client.

Every wait polls `capture-pane` until a deadline, so the tests don't depend on timing.
The `tmux` fixture (tests/conftest.py) gives each test one and kills it after.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path


class Tmux:
    """One detached tmux server of our own (its own socket), one pane running the client."""

    def __init__(self, folder: Path) -> None:
        self.socket = f"chat-tui-{uuid.uuid4().hex[:12]}"
        self.folder = folder
        self.exit_file = folder / "client.exit"
        self.err_file = folder / "client.stderr"
        #: The client's XDG config home: empty unless a test writes a config file there.
        self.config_home = folder / "config"
        self.output_file = folder / "client.output"
        # tmux decides about UTF-8 from the locale of whoever starts it.
        self.env = {**os.environ, "LC_ALL": "C.UTF-8"}

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-u", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=20,
        )
        return out.stdout

    def start_client(
        self,
        *client_args: str,
        width: int = 100,
        height: int = 30,
        python_flags: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
    ) -> None:
        config = f"XDG_CONFIG_HOME={self.config_home}"
        client = shlex.join(
            [config, *env, sys.executable, *python_flags, "-m", "chat.client", *client_args]
        )
        command = (
            f"env -u LINES -u COLUMNS {client} 2>{shlex.quote(str(self.err_file))}; "
            f"echo $? > {shlex.quote(str(self.exit_file))}"
        )
        self.tmux(
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            str(width),
            "-y",
            str(height),
            "sh",
            "-c",
            command,
        )
        # Every byte the client writes to its terminal, for checks that a screen cannot
        # show (the bell). Started before the client has drawn anything.
        self.tmux("pipe-pane", "-o", "-t", "chat", f"cat >> {shlex.quote(str(self.output_file))}")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)

    def paste(self, text: str) -> None:
        """Paste as a terminal does: bracketed (when the client asked for it), newlines as CR."""
        self.tmux("set-buffer", "-b", "chat-paste", text)
        self.tmux("paste-buffer", "-p", "-d", "-b", "chat-paste", "-t", "chat")

    def output(self) -> bytes:
        """What the client wrote to the terminal so far (escape sequences included)."""
        return self.output_file.read_bytes() if self.output_file.exists() else b""

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "chat", "-x", str(width), "-y", str(height))

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "chat")

    def wait_for(self, *needles: str, timeout: float = 15.0) -> str:
        """The screen once it shows every needle (plain substrings)."""
        return self.wait_until(lambda s: all(n in s for n in needles), f"{needles}", timeout)

    def wait_re(self, pattern: str, timeout: float = 15.0) -> str:
        """The screen once `pattern` (a regex) matches it."""
        return self.wait_until(lambda s: re.search(pattern, s) is not None, pattern, timeout)

    def wait_settled(self, *needles: str, timeout: float = 15.0) -> str:
        """The screen once it shows every needle and two captures in a row are the same
        (curses may be caught halfway through a redraw)."""
        last = [""]

        def check(screen: str) -> bool:
            same, last[0] = screen == last[0], screen
            return same and all(n in screen for n in needles)

        return self.wait_until(check, f"{needles}, settled", timeout)

    def wait_until(self, check: Callable[[str], bool], what: str, timeout: float = 15.0) -> str:
        """The screen once `check` holds, on two captures in a row that are the same: one
        capture may catch curses halfway through a redraw (a border half drawn, old rows
        under new ones), which a test's further checks on the screen returned took for
        the client's (under four test workers, now and then)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                time.sleep(0.05)
                if self.screen() == screen or time.monotonic() > deadline:
                    return screen
                continue  # still drawing: look again at once
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"screen never showed {what}:\n{screen}\nstderr: {self.stderr()}"
                )
            time.sleep(0.1)

    def exit_code(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.exit_file.exists() or not self.exit_file.read_text().strip():
            assert time.monotonic() < deadline, f"client did not exit:\n{self.screen()}"
            time.sleep(0.1)
        return int(self.exit_file.read_text())

    def stderr(self) -> str:
        return self.err_file.read_text(errors="replace") if self.err_file.exists() else ""

    def client_pid(self) -> int:
        """The client process: the only child of the pane's shell."""
        shell = self.tmux("display-message", "-p", "-t", "chat", "#{pane_pid}").strip()
        out = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, check=True)
        (pid,) = out.stdout.split()
        return int(pid)

    def kill(self) -> None:
        self.tmux("kill-server")
