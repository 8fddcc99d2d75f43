"""The bundled TUI client starts where the system has no terminfo, under LANG=C.

A frozen binary skips Python's C-locale coercion and may land on a machine
without a terminfo database; the client then has to use the terminfo entries
inside the bundle and switch LC_CTYPE to UTF-8 itself (packaging.md). Here the
client runs in tmux with ``env -i TERM=xterm LANG=C``; as root it also runs in
a private mount namespace where empty folders hide the system's terminfo
directories, so only the bundled copy can make curses start.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from onefile import Release, ServerRun, clean_env, wait_for

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_TERMINFO = ("/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo", "/usr/lib/terminfo")
CYRILLIC = "Привет, мир"


def _hide_terminfo_prefix() -> list[str]:
    """As root: a mount namespace with empty tmpfs over every system terminfo folder."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    present = [d for d in SYSTEM_TERMINFO if Path(d).is_dir() and not Path(d).is_symlink()]
    mounts = " && ".join(f"mount -t tmpfs none {d}" for d in present)
    # Refuse to go on if xterm is still reachable: the test would prove nothing.
    check = " && ".join(f"! test -e {d}/x/xterm" for d in SYSTEM_TERMINFO)
    return ["unshare", "--mount", "sh", "-c", f'{mounts} && {check} && exec "$@"', "hide"]


class Tmux:
    """One tmux server on a private socket, running one program in a 100x30 window."""

    def __init__(self, socket: Path, command: list[str]) -> None:
        self.base = ["tmux", "-S", str(socket)]
        self.pid_file = socket.with_suffix(".pid")
        # The program keeps the pid written here (exec all the way down), and the
        # shell stays after it so that a crash remains readable on screen.
        record = ["sh", "-c", f'echo $$ > {self.pid_file} && exec "$@"', "record"]
        shell = f"{shlex.join([*record, *command])}; echo chat-client exited $?; sleep 600"
        self.run("new-session", "-d", "-x", "100", "-y", "30", shell)

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, check=True
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J")

    def wait_for_text(self, text: str) -> str:
        try:
            return wait_for(lambda: self.screen() if text in self.screen() else None, repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen shows:\n{self.screen()}") from None

    def close(self) -> None:
        """SIGTERM the client (it says bye and restores the terminal), then end tmux."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the client to exit", 10)
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux_client(
    release: Release, no_python_path: str, workdir: Path, tmp_path: Path
) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = ServerRun(
        clean_env(no_python_path), str(release.binary("pyinstaller", "chat-server")),
        workdir, workdir,
    )  # fmt: skip
    client = [
        *_hide_terminfo_prefix(),
        *clean_env(no_python_path, TERM="xterm", LANG="C", HOME=str(tmp_path)),
        str(release.binary("pyinstaller", "chat-client")),
        "--host", "127.0.0.1", "--port", str(server.port), "--user", "carol",
    ]  # fmt: skip
    tmux = Tmux(tmp_path / "tmux.sock", client)
    try:
        yield tmux
    finally:
        tmux.close()
        server.stop()


def test_tui_renders_and_shows_typed_cyrillic_without_system_terminfo(tmux_client: Tmux) -> None:
    screen = tmux_client.wait_for_text("^X Menu")
    assert "setupterm" not in screen and "Traceback" not in screen
    tmux_client.run("send-keys", "-l", CYRILLIC)
    tmux_client.wait_for_text(CYRILLIC)
