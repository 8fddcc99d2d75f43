"""`chat-client --no-tls` beside `--tls` or `--tls-ca` is a contradiction, refused in one line.

It used to be accepted with TLS silently winning (or the last switch winning),
so a user who asked for plain TCP in one place and TLS in another never
learned which one ran. `--no-tls` alone still overrides a config file's TLS.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = [sys.executable, "-m", "chat.client"]
REFUSAL = "chat-client: --no-tls contradicts --tls and --tls-ca: give one or the other\n"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [*CLIENT, "--no-tui", "--user", "alice", "--password", "pw", "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--no-tls", "--tls"],
        ["--tls", "--no-tls"],
        ["--no-tls", "--tls-ca", "ca.pem"],
        ["--tls-ca", "ca.pem", "--no-tls"],
        ["--no-tls", "--tls", "--tls-ca", "ca.pem"],
    ],
    ids=" ".join,
)
def test_no_tls_with_tls_or_a_ca_is_refused_in_one_line(tmp_path: Path, args: list[str]) -> None:
    result = _run(tmp_path, *args)
    assert (result.returncode, result.stderr, result.stdout) == (2, REFUSAL, "")


def test_no_tls_alone_overrides_the_config_file_s_ca(server, tmp_path: Path) -> None:
    """The documented use of --no-tls: plain TCP whatever the file says; it logs in."""
    folder = tmp_path / "config" / "chat-client"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('tls-ca = "/nonexistent/ca.pem"\n', encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [
            *CLIENT,
            *["--no-tui", "--host", server.host, "--port", str(server.port)],
            *["--user", "alice", "--password", "pw", "--register", "--no-tls"],
        ],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "contradicts" not in result.stderr
    assert "registered and logged in fd=" in server.log()


def test_the_same_switch_twice_is_not_a_contradiction(tmp_path: Path) -> None:
    result = _run(tmp_path, "--no-tls", "--no-tls")
    assert "contradicts" not in result.stderr
    assert result.returncode == 1  # it tried: nothing listens on port 1
