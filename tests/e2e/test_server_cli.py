"""The chat-server command line: option errors, --help, and the zero-option start."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_support import online

from wire import WireClient

SERVER = [sys.executable, "-m", "chat.server"]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--hash-cost",
        "10",
        "--users-file",
        str(tmp_path / "users.db"),
        "--log-file",
        str(tmp_path / "log"),
    ]
    return subprocess.run(
        [*SERVER, *base, *args], cwd=tmp_path, capture_output=True, text=True, timeout=20
    )


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000"],
        ["--port", "-1"],
        ["--port", "http"],
        ["--threads", "0"],
        ["--threads", "-2"],
        ["--max-clients", "0"],
        ["--max-events", "0"],
        ["--max-frame", "0"],
        ["--max-frame", "10"],
        ["--config", "/nonexistent/chat-server.toml"],
        ["--tls-key", "key.pem"],
        ["--epoll-timeout", "soon"],
        ["--ack-timeout", "-1"],
        ["--log-level", "LOUD"],
        ["--no-such-option"],
    ],
    ids=" ".join,
)
def test_invalid_option_values_give_one_line_and_exit_code_2(tmp_path, args) -> None:
    result = _run(tmp_path, "--key-file", str(tmp_path / "k"), *args)
    assert result.returncode == 2, result
    _one_clear_line(result)


def test_key_file_that_is_a_directory_gives_one_line_and_exit_code_2(tmp_path) -> None:
    folder = tmp_path / "keydir"
    folder.mkdir()
    result = _run(tmp_path, "--key-file", str(folder))
    assert result.returncode == 2, result
    _one_clear_line(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file (the directory case covers it)")
def test_unreadable_key_file_gives_one_line_and_exit_code_2(tmp_path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0)
    result = _run(tmp_path, "--key-file", str(key))
    assert result.returncode == 2, result
    _one_clear_line(result)


def test_key_file_shorter_than_16_bytes_is_refused_with_one_line(tmp_path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(os.urandom(15))
    key.chmod(0o600)
    result = _run(tmp_path, "--key-file", str(key))
    assert result.returncode != 0, result
    _one_clear_line(result)


def test_key_of_16_arbitrary_bytes_is_accepted(start_server, tmp_path) -> None:
    key = tmp_path / "short.key"
    key.write_bytes(bytes(range(240, 256)))  # any values, even non-UTF-8
    key.chmod(0o600)
    server = start_server(key_file=key)
    online(server, "alice")


OPTIONS = [
    "--host",
    "--port",
    "--threads",
    "--max-clients",
    "--epoll-timeout",
    "--max-events",
    "--users-file",
    "--key-file",
    "--cipher-lib",
    "--max-frame",
    "--ack-timeout",
    "--idle-timeout",
    "--log-file",
    "--log-level",
    "--version",
    "--config",
    "--data-dir",
    "--tls-cert",
    "--tls-key",
    "--auth-timeout",
    "--frame-timeout",
    "--max-total-outbuf",
    "--max-unauth-per-addr",
    "--hash-threads",
    "--hash-queue",
]


def test_help_documents_every_option(tmp_path) -> None:
    result = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    for option in OPTIONS:
        assert re.search(rf"{re.escape(option)}\b", result.stdout), option


def test_server_starts_with_no_options_but_the_port_in_an_empty_folder(tmp_path) -> None:
    """Defaults must work: key and users file are made in the current folder."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*SERVER, "--port", "0"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        port = _listening_port(proc, err_path)
        c = WireClient("127.0.0.1", port)
        try:
            c.login("alice", "pw")
        finally:
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    created = [p for p in tmp_path.iterdir() if p != err_path]
    assert created, "no key or users file in the working folder"
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _listening_port(proc: subprocess.Popen[bytes], err_path: Path) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if m := re.search(r"listening on \S+ port (\d+)", err_path.read_text(errors="replace")):
            return int(m.group(1))
        assert proc.poll() is None, err_path.read_text()
        time.sleep(0.05)
    raise AssertionError("the server did not start listening")


def _hash_threads_help(*prefix: str) -> str:
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [*prefix, *SERVER, "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return " ".join(out.rsplit("--hash-threads N", 1)[1].split("--hash-queue", 1)[0].split())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two cores tell one from all")
def test_hash_threads_default_to_the_cores_the_server_may_run_on() -> None:
    """scrypt runs outside the GIL: one hash thread per core the process may run on (its
    CPU affinity, so `taskset` and cgroup cpusets count), and --help says so (issue 22)."""
    cores = len(os.sched_getaffinity(0))
    assert f"one per core this process may run on, {cores} here" in _hash_threads_help()
    pinned = _hash_threads_help("taskset", "-c", "0")
    assert "one per core this process may run on, 1 here" in pinned
