"""SIGHUP: the log reopened (logrotate), the config file re-read, live settings applied.

A real server started with --config and --log-file, signalled as logrotate and
`systemctl reload` do; the effects are checked from outside (a new log file,
`rate_limited` after fewer sends, `server_full`, `timeout`, the certificate a
new TLS connection gets), and the server must stay up through all of it.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certs import make_pair
from wire import WireClient

SERVER = [sys.executable, "-m", "chat.server"]
ROOT = Path(__file__).parents[2]
PASSWORD = "correct horse"
BASE = 'host = "127.0.0.1"\nport = 0\nhash-cost = 10\n'


class Server:
    """chat-server --config CONF --log-file LOG, in `folder`."""

    def __init__(self, folder: Path, conf: str | None, *extra: str) -> None:
        self.folder = folder
        self.log_path = folder / "server.log"
        self.conf = folder / "chat.toml"
        args = [*SERVER, "--log-file", str(self.log_path), "--data-dir", str(folder / "data")]
        if conf is not None:
            self.conf.write_text(BASE + conf, encoding="utf-8")
            args += ["--config", str(self.conf)]
        self.proc = subprocess.Popen(
            [*args, *extra], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        listening = self.wait_log(r"listening on \S+ port \d+")
        self.port = int(re.findall(r"port (\d+)", listening)[0])

    def log(self, path: Path | None = None) -> str:
        path = path or self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, pattern: str, path: Path | None = None, timeout: float = 15) -> str:
        """The first log line that matches `pattern` (a regex), once it is there."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log(path).splitlines():
                if re.search(pattern, line):
                    return line
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.log(path)}"
            assert time.monotonic() < deadline, f"no {pattern!r} in the log:\n{self.log(path)}"
            time.sleep(0.02)

    def reload(self, conf: str | None = None, expect: str = r"reload: ") -> str:
        """Rewrite the config file (BASE + conf), SIGHUP, wait for `expect` after it."""
        if conf is not None:
            self.conf.write_text(BASE + conf, encoding="utf-8")
        marker = len(self.log().splitlines())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while True:
            lines = self.log().splitlines()[marker:]
            if any(re.search(expect, line) for line in lines):
                time.sleep(0.05)  # the lines of one reload come together
                return "\n".join(self.log().splitlines()[marker:])
            assert self.proc.poll() is None, f"exited {self.proc.returncode} on SIGHUP"
            assert time.monotonic() < deadline, f"no {expect!r} after SIGHUP:\n{self.log()}"
            time.sleep(0.02)

    def client(self) -> WireClient:
        return WireClient("127.0.0.1", self.port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def run(conf: str | None = "", *extra: str) -> Server:
        server = Server(tmp_path, conf, *extra)
        started.append(server)
        return server

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def _online(server: Server, name: str) -> WireClient:
    c = server.client()
    c.login(name, PASSWORD)
    c.send({"type": "ping"})
    assert c.recv_type("pong") == {"type": "pong"}
    return c


def _sends_until_limited(c: WireClient, count: int) -> list[str]:
    """Send `count` messages to everyone at once; the type answering each, in order."""
    for i in range(count):
        c.send({"type": "send", "id": i, "to": "*", "text": f"m{i}"})
    answers = []
    while len(answers) < count:
        frame = c.recv()
        if frame["type"] in ("sent", "error"):
            answers.append(frame["type"] if frame["type"] == "sent" else frame["code"])
    return answers


# --------------------------------------------------------------------------
# The signal itself
# --------------------------------------------------------------------------
def test_sighup_leaves_the_server_running_and_sigterm_still_stops_it_with_bye(start) -> None:
    """The issue: SIGHUP killed the server (exit 129, no log line, no bye)."""
    server = start()
    alice = _online(server, "alice")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("received SIGHUP")
    time.sleep(0.2)
    assert server.proc.poll() is None
    alice.send({"type": "ping"})
    assert alice.recv_type("pong") == {"type": "pong"}  # the connection survived too
    server.proc.send_signal(signal.SIGTERM)
    assert alice.recv_type("bye") == {"type": "bye", "reason": "shutdown"}
    assert server.proc.wait(15) == 0
    alice.close()


def test_sighup_reopens_a_renamed_log_file(start) -> None:
    """logrotate: rename, then SIGHUP; the server writes a new file by the old name."""
    server = start()
    rotated = server.log_path.with_name("server.log.1")
    server.log_path.rename(rotated)
    server.proc.send_signal(signal.SIGHUP)
    first = server.wait_log("received SIGHUP: log file .* reopened")  # in the NEW file
    assert str(server.log_path) in first
    _online(server, "alice").close()
    server.wait_log(r"registered and logged in fd=\d+ user=alice")
    old = rotated.read_text()
    assert "listening on" in old and "alice" not in old  # nothing more went to the old one
    assert server.stop() == 0
    assert "stopped:" in server.log()


def test_sighup_without_a_config_file_reopens_the_log_and_says_so(start) -> None:
    server = start(None)
    server.log_path.rename(server.log_path.with_name("old.log"))
    line = server.reload(expect="no --config file")
    assert "log file reopened" in line and "nothing else to re-read" in line
    assert server.proc.poll() is None


# --------------------------------------------------------------------------
# Settings that change live
# --------------------------------------------------------------------------
def test_a_lower_rate_burst_applies_to_new_connections_after_sighup(start) -> None:
    server = start("rate-limit = 1\nrate-burst = 20\n")
    before = server.client()
    before.login("alice", PASSWORD)
    assert _sends_until_limited(before, 6) == ["sent"] * 6  # the burst of 20 allows them
    lines = server.reload("rate-limit = 1\nrate-burst = 3\n")
    assert "reload: rate-burst 20 -> 3" in lines
    assert "INFO" in next(line for line in lines.splitlines() if "rate-burst" in line)
    after = server.client()
    after.login("bob", PASSWORD)
    assert _sends_until_limited(after, 6) == ["sent"] * 3 + ["rate_limited"] * 3
    before.close()
    after.close()


def test_a_shorter_idle_timeout_reaches_connections_already_open(start) -> None:
    server = start("idle-timeout = 300\n")
    alice = _online(server, "alice")
    assert "reload: idle-timeout 300.0 -> 1.0" in server.reload("idle-timeout = 1\n")
    frames = alice.expect_closed(timeout=6)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "timeout", frames


def test_max_clients_goes_down_and_back_up_to_its_start_value_but_not_above(start) -> None:
    server = start("max-clients = 2\n")
    a = _online(server, "alice")
    assert "reload: max-clients 2 -> 1" in server.reload("max-clients = 1\n")
    refused = server.client()
    assert refused.recv()["code"] == "server_full"  # alice is not closed, the new one is
    a.send({"type": "ping"})
    assert a.recv_type("pong") == {"type": "pong"}
    lines = server.reload("max-clients = 5\n")
    assert "max-clients 5 is above 2, its value at start" in lines
    assert "WARNING" in lines
    still = server.client()
    assert still.recv()["code"] == "server_full"  # still 1: the warning says so
    assert "reload: max-clients 1 -> 2" in server.reload("max-clients = 2\n")
    b = _online(server, "bob")
    for c in (a, refused, still, b):
        c.close()


def test_log_level_changes_and_the_settings_needing_a_restart_are_named(start) -> None:
    server = start('log-level = "INFO"\nthreads = 4\n')
    lines = server.reload('log-level = "DEBUG"\nthreads = 2\nmax-events = 10\n')
    assert "reload: log-level INFO -> DEBUG" in lines
    restart = [line for line in lines.splitlines() if "need a restart" in line]
    assert len(restart) == 1 and " WARNING " in restart[0], lines
    assert "threads" in restart[0] and "max-events" in restart[0], restart
    server.wait_log(" DEBUG chat.server.epoll: epoll_wait")
    assert server.proc.poll() is None
    _online(server, "alice").close()  # still running, with its old threads


def test_min_password_changes_on_reload(start) -> None:
    server = start("min-password = 1\n")
    assert "reload: min-password 1 -> 8" in server.reload("min-password = 8\n")
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": "short", "register": True})
    answer = c.recv()
    assert (answer["type"], answer["code"]) == ("error", "bad_request"), answer
    c.close()


# --------------------------------------------------------------------------
# A bad file changes nothing
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("rate-burst = [", "not valid TOML"),
        ("rate-burst = 0", "out of range"),
        ("rate-brust = 3", "unknown key"),
        ("max-frame = 10", "--max-frame 10 is below"),
    ],
)
def test_a_bad_config_file_keeps_the_server_and_its_settings(start, text: str, word: str) -> None:
    server = start("rate-limit = 1\nrate-burst = 4\n")
    lines = server.reload(f"rate-limit = 1\n{text}\n", expect="keeping the current settings")
    errors = [line for line in lines.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and word in errors[0], lines
    assert "->" not in lines  # nothing applied
    c = server.client()
    c.login("alice", PASSWORD)
    assert _sends_until_limited(c, 6) == ["sent"] * 4 + ["rate_limited"] * 2  # still 4
    c.close()
    assert "rate-burst 4 -> 2" in server.reload("rate-limit = 1\nrate-burst = 2\n")  # then fixed


# --------------------------------------------------------------------------
# TLS: a renewed certificate without a restart
# --------------------------------------------------------------------------
def _served_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_renewed_certificate_is_served_after_sighup_and_a_bad_one_is_not(
    start, tmp_path: Path
) -> None:
    first = make_pair(tmp_path / "a", "first")
    second = make_pair(tmp_path / "b", "second")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(first[0].read_bytes())
    key.write_bytes(first[1].read_bytes())
    key.chmod(0o600)
    server = start(f'tls-cert = "{cert}"\ntls-key = "{key}"\n')
    assert _served_certificate(server.port, first[0]) == _der(first[0])
    cert.write_bytes(second[0].read_bytes())  # a key that does not match: refused
    lines = server.reload(expect="keeping the current certificate")
    assert len([line for line in lines.splitlines() if " ERROR " in line]) == 1, lines
    assert "nothing changed" not in lines
    assert _served_certificate(server.port, first[0]) == _der(first[0])
    key.write_bytes(second[1].read_bytes())  # the renewal completed
    assert "TLS certificate" in server.reload(expect="changed on disk")
    assert _served_certificate(server.port, second[0]) == _der(second[0])
    assert "nothing changed" in server.reload(expect="nothing changed")  # same bytes


def test_turning_tls_off_needs_a_restart(start, tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path / "tls", "x")
    server = start(f'tls-cert = "{cert}"\ntls-key = "{key}"\n')
    lines = server.reload("", expect="need a restart")
    assert "tls-cert, tls-key" in lines
    assert _served_certificate(server.port, cert) == _der(cert)


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------
def test_the_unit_reloads_with_sighup() -> None:
    unit = (ROOT / "packaging" / "chat-server.service").read_text()
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    reloads = [line for line in service.splitlines() if line.startswith("ExecReload=")]
    assert reloads == ["ExecReload=/bin/kill -HUP $MAINPID"]


def test_registration_closes_and_opens_on_reload(start) -> None:
    server = start('registration = "open"\n')
    c = server.client()
    c.login("alice", PASSWORD)  # open: anyone registers
    c.close()
    assert "reload: registration open -> closed" in server.reload('registration = "closed"\n')
    c = server.client()
    c.send({"type": "auth", "user": "bob", "password": PASSWORD, "register": True})
    answer = c.recv()
    assert (answer["type"], answer["code"]) == ("error", "registration_closed"), answer
    c.send({"type": "auth", "user": "alice", "password": PASSWORD})  # accounts still log in
    assert c.recv() == {"type": "auth_ok", "user": "alice"}
    c.close()
    server.reload('registration = "open"\n')
    c = server.client()
    c.login("bob", PASSWORD)
    c.close()
