"""The README's shell commands, run as written.

Every ```sh block of README.md is found here and either run or skipped with
the reason printed; a new block that no test knows fails
`test_every_sh_block_of_the_readme_is_known`.

"As written" means the text of the block goes to `sh -c` unchanged, with two
exceptions, both about this machine rather than the commands:

- `7777` becomes a free port (other runs may hold 7777), wherever the README
  writes it (server and clients alike);
- `~` is a fresh folder of the test (`HOME`), and `./chat-server` /
  `./chat-client` are the programs installed in the test's environment (in
  the release archive they sit beside the README's commands the same way);
  the cluster block's Redis address is a redis-server started by the test.

The full-screen clients run in tmux (our own socket), as a person would run
them, and the test reads their screen. The download block needs a release
(CHAT_RELEASE_DIR, as tests/packaging); the release and test-suite blocks are
what tests/packaging and this suite themselves run, so they are skipped here
with that reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat.server.ops.cli import parse_args
from wire import WireClient

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
RELEASE = os.environ.get("CHAT_RELEASE_DIR")
LISTENING = re.compile(r"listening on \S+ port (\d+)")


# --------------------------------------------------------------------------
# The blocks
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    line: int  # in README.md, for messages
    commands: tuple[str, ...]  # one per command, backslash continuations joined


def sh_blocks() -> list[Block]:
    """Every ```sh block, indented ones (in a list item) included."""
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"(\s*)```sh\s*", lines[i])
        if opening is None:
            i += 1
            continue
        indent, start, body = opening.group(1), i + 1, []
        i += 1
        while not re.fullmatch(rf"{indent}```\s*", lines[i]):
            body.append(lines[i][len(indent) :])
            i += 1
        commands = "\n".join(body).replace("\\\n", " ").splitlines()
        blocks.append(Block(start, tuple(c for c in commands if c.strip())))
        i += 1
    return blocks


def block(first: str) -> Block:
    """The one block whose first command starts with `first`."""
    found = [b for b in sh_blocks() if b.commands[0].startswith(first)]
    assert len(found) == 1, (first, found)
    return found[0]


#: How each block is covered: the test that runs it, or why it is not run here.
KNOWN: dict[str, str] = {
    "sha256sum -c": "test_the_download_block (needs CHAT_RELEASE_DIR)",
    "./chat-server --data-dir ~/.local/share/chat-server --host 127.0.0.1 --port 7777": (
        "test_the_quick_start"
    ),
    "./chat-server cert generate": "test_the_quick_start",
    "CHAT_PASSWORD='alice secret' ./chat-client": "test_the_quick_start",
    "./chat-client --host 127.0.0.1 --port 7777 --user alice --tls-ca": "test_the_quick_start",
    "mkdir -p ~/.cache/chat-tmp": "test_the_tmpdir_line",
    "./chat-server --key-file shared.key": "test_the_cluster_block",
    "python3 -m venv .venv": "test_from_source",
    "CHAT_PASSWORD='alice secret' .venv/bin/chat-client": "test_from_source",
    "./scripts/test.sh": "skipped: it is this test suite (a test running it would recurse)",
    "scripts/release.sh": "skipped: tests/packaging builds with scripts/release.sh",
    ".venv/bin/pip install pyinstaller": "skipped: tests/packaging is how it is run",
}


def test_every_sh_block_of_the_readme_is_known() -> None:
    blocks = sh_blocks()
    assert len(blocks) >= 10, blocks
    for b in blocks:
        keys = [k for k in KNOWN if b.commands[0].startswith(k)]
        assert len(keys) == 1, f"README.md line {b.line}: no test knows {b.commands[0]!r}"


# --------------------------------------------------------------------------
# Running them
# --------------------------------------------------------------------------
def free_port() -> int:
    with socket.create_server(("", 0)) as s:
        return int(s.getsockname()[1])


class Shell:
    """A folder to run commands in, with `./chat-server`, `./chat-client` and a fresh HOME."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        for program in ("chat-server", "chat-client"):
            (self.cwd / program).symlink_to(BIN / program)
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("CHAT_PASSWORD", "TMPDIR")},
            "HOME": str(self.home),
            "LC_ALL": "C.UTF-8",
        }
        self.env.pop("XDG_CONFIG_HOME", None)
        self.started: list[Background] = []
        self.terminal = Terminal(tmp_path, self)

    def written(self, command: str) -> str:
        return re.sub(r"\b7777\b", str(self.port), command)

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", self.written(command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, command: str, name: str, timeout: float = 30) -> Background:
        """A server command in the background, once it listens."""
        bg = Background(self, self.written(command), self.cwd.parent / f"{name}.out")
        self.started.append(bg)
        bg.wait_listening(timeout)
        return bg


class Background:
    def __init__(self, shell: Shell, command: str, out: Path) -> None:
        self.out = out
        with out.open("w") as handle:
            self.proc = subprocess.Popen(
                ["sh", "-c", command],
                cwd=shell.cwd,
                env=shell.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_listening(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not (m := LISTENING.search(self.output())):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"not listening:\n{self.output()}"
            time.sleep(0.05)
        return int(m.group(1))

    def stop(self) -> str:
        """SIGTERM, as a person's ^C or systemd would; the server's clean stop, checked."""
        signal_group(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while "stopped:" not in self.output():
            assert time.monotonic() < deadline, f"no clean stop:\n{self.output()}"
            time.sleep(0.05)
        self.proc.wait(20)
        assert "Traceback" not in self.output(), self.output()
        return self.output()


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class Terminal:
    """Full-screen clients in tmux (a tmux server of our own), one session each."""

    def __init__(self, folder: Path, shell: Shell) -> None:
        self.socket = f"chat-readme-{uuid.uuid4().hex[:12]}"
        self.folder = folder
        self.shell = shell

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-u", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.shell.env,
            timeout=20,
        )
        return result.stdout

    def open(self, name: str, command: str) -> None:
        err = self.folder / f"{name}.stderr"
        inner = (
            f"cd {shlex.quote(str(self.shell.cwd))} && "
            f"env -u LINES -u COLUMNS sh -c {shlex.quote(self.shell.written(command))} "
            f"2>{shlex.quote(str(err))}"
        )
        self.tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30", "sh", "-c", inner)

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", name)

    def wait_for(self, name: str, *needles: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(name)
            if all(n in screen for n in needles):
                return screen
            if time.monotonic() > deadline:
                err = self.folder / f"{name}.stderr"
                raise AssertionError(
                    f"{name}: never showed {needles}:\n{screen}\n"
                    f"stderr: {err.read_text() if err.exists() else ''}"
                )
            time.sleep(0.1)

    def keys(self, name: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", name, *keys)

    def type(self, name: str, text: str) -> None:
        self.tmux("send-keys", "-t", name, "-l", text)

    def log_in_by_the_form(self, name: str, user: str, password: str) -> None:
        """A client started with --user and no password: ^X, l, the password, Enter."""
        self.wait_for(name, f"Press ^X, then l to log in as {user}")
        self.keys(name, "C-x")
        self.wait_for(name, "Log in")
        self.keys(name, "l")
        self.wait_for(name, "Password:")
        self.type(name, password)
        self.keys(name, "Enter")
        self.wait_for(name, f"logged in as {user}")

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    s = Shell(tmp_path)
    yield s
    s.terminal.close()
    for bg in s.started:
        signal_group(bg.proc.pid, signal.SIGKILL)
        bg.proc.wait(10)


needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt)"
)


def _password(command: str) -> str:
    found = re.match(r"CHAT_PASSWORD='([^']*)'", command)
    assert found, command
    return found.group(1)


def _user(command: str) -> str:
    return shlex.split(command)[shlex.split(command).index("--user") + 1]


# --------------------------------------------------------------------------
# The quick start: a server, three people, then TLS
# --------------------------------------------------------------------------
@needs_tmux
def test_the_quick_start(shell: Shell) -> None:
    """The 'Download and run' walk-through, in the README's order, on one data folder."""
    (server_line,) = block("./chat-server --data-dir ~/.local/share/chat-server").commands
    server = shell.start(server_line, "server")
    people = block("CHAT_PASSWORD='alice secret' ./chat-client").commands
    assert len(people) == 3
    for i, command in enumerate(people):
        shell.terminal.open(f"p{i}", command)
    for i, command in enumerate(people):
        shell.terminal.wait_for(f"p{i}", f"registered and logged in as {_user(command)}")
    data = shell.home / ".local" / "share" / "chat-server"
    assert (data / "users.db").exists() and (data.stat().st_mode & 0o777) == 0o700
    shell.terminal.close()
    server.stop()

    # TLS, a first try: the certificate, the server with it, a client that trusts it.
    generate, tls_server, tls_client = block("./chat-server cert generate").commands
    made = shell.run(generate)
    assert made.returncode == 0, made.stderr
    served = shell.start(tls_server, "tls-server")
    assert "(TLS)" in served.output()
    alice = _password(people[0])
    shell.terminal = Terminal(shell.cwd.parent, shell)
    shell.terminal.open("tls", tls_client)
    shell.terminal.log_in_by_the_form("tls", "alice", alice)

    # "To connect with TLS": the same server, by its address (the issue: IP address mismatch).
    (by_address,) = block("./chat-client --host 127.0.0.1 --port 7777 --user alice").commands
    assert "127.0.0.1" in by_address and "--tls-ca" in by_address
    shell.terminal.open("tls-ip", by_address)
    shell.terminal.log_in_by_the_form("tls-ip", "alice", alice)
    shell.terminal.close()
    served.stop()


def test_the_tmpdir_line(shell: Shell) -> None:
    (command,) = block("mkdir -p ~/.cache/chat-tmp").commands
    server = shell.start(command, "server")
    c = WireClient("127.0.0.1", shell.port)
    try:
        c.login("alice", "alice secret")
    finally:
        c.close()
    assert (shell.home / ".cache" / "chat-tmp").is_dir()
    server.stop()


def test_the_cluster_block(shell: Shell, tmp_path: Path) -> None:
    """Machine 1's line runs against a redis-server of the test (its port put in for 6379);
    machine 2's line names 10.0.0.5, which is not here: its options are parsed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI does)")
    machine1, machine2 = block("./chat-server --key-file shared.key").commands
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            *["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            *["--appendonly", "no", "--dir", str(tmp_path)],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert "127.0.0.1:6379" in machine1
        server = shell.start(machine1.replace("127.0.0.1:6379", f"127.0.0.1:{redis_port}"), "n1")
        c = WireClient("127.0.0.1", shell.port)
        try:
            c.login("alice", "alice secret")
        finally:
            c.close()
        server.stop()
        assert (shell.cwd / "shared.key").exists()
        argv = shlex.split(machine2.split("#")[0])
        assert argv[0] == "./chat-server"
        assert parse_args(argv[1:]).cluster == "redis://10.0.0.5:6379/0"
    finally:
        redis.terminate()
        redis.wait(10)


@needs_tmux
def test_from_source(shell: Shell, tmp_path: Path) -> None:
    """'From source': a copy of this checkout, the venv made and the project installed by
    the README's own command, then the server it starts and three clients."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    shell.cwd = checkout
    (command,) = block("python3 -m venv .venv").commands
    server = shell.start(command, "source-server", timeout=600)  # pip builds the C parts
    assert (checkout / "data" / "server.key").exists()
    people = block("CHAT_PASSWORD='alice secret' .venv/bin/chat-client").commands
    for i, line in enumerate(people):
        shell.terminal.open(f"s{i}", line)
    for i, line in enumerate(people):
        shell.terminal.wait_for(f"s{i}", f"registered and logged in as {_user(line)}")
    shell.terminal.close()
    server.stop()


def test_the_download_block(shell: Shell) -> None:
    if not RELEASE:
        pytest.skip(
            "needs a release: set CHAT_RELEASE_DIR=dist/<version>/<target> (as tests/packaging)"
        )
    commands = block("sha256sum -c").commands
    archive = shlex.split(commands[1])[-1]
    source = Path(RELEASE)
    if not (source / archive).exists():
        pytest.skip(f"{archive}, which the README names, is not in {source}")
    for name in ("SHA256SUMS", archive):
        shutil.copy2(source / name, shell.cwd / name)
    for program in ("chat-server", "chat-client"):
        (shell.cwd / program).unlink()  # the archive's own programs, not ours
    result = shell.run(" && ".join(commands), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{archive}: OK" in result.stdout
    assert "usage: chat-server" in result.stdout
