"""The config file end to end: `--save-config` writes it (0600), a client started with no
options at all then logs in from it, and a password in a readable file is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from server_support import PASSWORD, online, register


def run_client(
    *args: str, config_home: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat.client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "XDG_CONFIG_HOME": str(config_home), **env},
    )


def test_save_config_writes_a_private_file_without_the_password_unless_asked(
    server, tmp_path: Path
) -> None:
    register(server, "alice")
    home = tmp_path / "conf"
    path = home / "chat-client" / "config.toml"
    args = ("--host", server.host, "--port", str(server.port), "--user", "alice", "--no-bell")
    done = run_client(*args, "--save-config", config_home=home, CHAT_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"chat-client: saved host, port, user, bell to {path} (mode 0600)\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    assert 'user = "alice"' in path.read_text() and "bell = false" in path.read_text()

    done = run_client("--save-config", "--save-password", config_home=home, CHAT_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f'password = "{PASSWORD}"' in path.read_text()

    # Now nothing but the mode on the command line: the file says where and who.
    bob = online(server, "bob")
    env = {k: v for k, v in os.environ.items() if k != "CHAT_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "chat.client", "--no-tui"],
        input="from the config file\n",
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "XDG_CONFIG_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert bob.recv_type("msg")["text"] == "from the config file"


def test_line_mode_refuses_a_readable_file_with_a_password(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('user = "alice"\npassword = "pw"\n', encoding="utf-8")
    os.chmod(path, 0o604)
    done = run_client("--no-tui", "--config", str(path), config_home=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"chat-client: {path} holds a password and others can read it (mode 0604): "
        f"chmod 600 {path}, or remove the password\n"
    )


def test_a_named_config_file_that_is_missing_is_one_line(tmp_path: Path) -> None:
    done = run_client("--no-tui", "--config", str(tmp_path / "nope.toml"), config_home=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"chat-client: {tmp_path / 'nope.toml'}: no such file\n"


def test_save_password_alone_is_a_usage_error(tmp_path: Path) -> None:
    done = run_client("--save-password", config_home=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "chat-client: --save-password only goes with --save-config\n"
