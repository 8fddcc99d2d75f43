"""`chat-server backup` under load and `chat-server restore`, with the real CLI and server.

What was acknowledged before the backup started (an `auth_ok` to a
registration, a `sent` that names a user as queued) is in the backup: a
server started on the restored files logs every such account in and hands
every such queued message over.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from server_support import PASSWORD, messages, online, register, send_msg

from conftest import ServerProc, launch
from wire import WireClient


def cli(folder: Path, *words: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "chat.server", *words, "--data-dir", str(folder)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def start(folder: Path, name: str) -> ServerProc:
    folder.mkdir(exist_ok=True)
    return launch(
        folder,
        "--data-dir",
        str(folder),
        "--offline-max",
        "1000000",
        users_file=folder / "users.db",
        key_file=folder / "server.key",
        log_name=f"../{name}.log",
    )


class Load:
    """Registrations and queued messages, as fast as one client each can make them; what
    was acknowledged, in order."""

    def __init__(self, server: ServerProc) -> None:
        self.server = server
        self.accounts: list[str] = []
        self.queued: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._register),
            threading.Thread(target=self._send),
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _register(self) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"user{i}"
            c = WireClient(self.server.host, self.server.port)
            c.send({"type": "auth", "user": name, "password": PASSWORD, "register": True})
            if c.recv(10) == {"type": "auth_ok", "user": name}:
                self.accounts.append(name)  # acknowledged: durable from here on
            c.close()
            i += 1

    def _send(self) -> None:
        sender = online(self.server, "sender", register=False)
        i = 0
        while not self._stop.is_set():
            text = f"queued {i}"
            answer = send_msg(sender, ["away"], text, i)
            if answer["queued"] == ["away"]:
                self.queued.append(text)  # acknowledged as queued: durable
            i += 1
        sender.close()


def test_a_backup_under_load_restores_every_acknowledged_account_and_message(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = start(data, "before")
    register(server, "sender", "away")
    out = tmp_path / "chat.backup"
    try:
        with Load(server) as load:
            time.sleep(1.5)
            accounts, queued = list(load.accounts), list(load.queued)  # acknowledged by now
            made = cli(data, "backup", "--out", str(out), "--with-key")
            time.sleep(0.5)  # the load goes on during and after the backup
        assert made.returncode == 0 and made.stderr == "", made
        assert made.stdout.startswith(f"backup {out}: ") and "with the key file" in made.stdout
        assert len(accounts) >= 5 and len(queued) >= 20, (len(accounts), len(queued))
        assert len(load.accounts) > len(accounts)  # it did run under load
    finally:
        assert server.stop() == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == [
            "chat-backup.json",
            "history.db",
            "server.key",
            "users.db",
        ]
    # Restored elsewhere (a new machine): every acknowledged account and message is there.
    elsewhere = tmp_path / "restored"
    done = cli(elsewhere, "restore", "--from", str(out))
    assert done.returncode == 0 and done.stderr == "", done
    restored = start(elsewhere, "after")
    try:
        for name in ["sender", *accounts]:
            c = restored.client()
            c.send({"type": "auth", "user": name, "password": PASSWORD})
            assert c.recv() == {"type": "auth_ok", "user": name}, name
            c.close()
        away = restored.client()
        away.login("away", PASSWORD, register=False)
        got = [m["text"] for m in messages(away, len(queued), timeout=30)]
        assert got == queued  # the first ones, in order; maybe more after them
    finally:
        assert restored.stop() == 0


def test_a_backup_without_the_key_restores_next_to_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start(data, "one")
    register(server, "alice")
    out = tmp_path / "nokey.backup"
    made = cli(data, "backup", "--out", str(out))
    assert made.returncode == 0 and "without the key file" in made.stdout, made
    with tarfile.open(out) as tar:
        assert "server.key" not in tar.getnames()
    assert server.stop() == 0
    other = tmp_path / "other"
    refused = cli(other, "restore", "--from", str(out))  # no key there: refused, nothing made
    assert refused.returncode == 1 and "holds no key" in refused.stderr, refused
    assert refused.stderr.count("\n") == 1 and not (other / "users.db").exists()
    other.mkdir(exist_ok=True)
    (other / "server.key").write_bytes((data / "server.key").read_bytes())
    (other / "server.key").chmod(0o600)
    assert cli(other, "restore", "--from", str(out)).returncode == 0
    again = start(other, "two")
    try:
        c = again.client()
        c.login("alice", PASSWORD, register=False)
    finally:
        again.stop()


def test_restore_refuses_a_running_server_and_data_already_there(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start(data, "one")
    register(server, "alice")
    out = tmp_path / "b.backup"
    assert cli(data, "backup", "--out", str(out)).returncode == 0
    register(server, "bob")  # after the backup
    running = cli(data, "restore", "--from", str(out), "--force")
    assert running.returncode == 1 and "running" in running.stderr, running
    assert server.stop() == 0
    there = cli(data, "restore", "--from", str(out))
    assert there.returncode == 1 and "--force" in there.stderr, there
    forced = cli(data, "restore", "--from", str(out), "--force")
    assert forced.returncode == 0, forced
    assert (data / "users.db.before-restore").exists()  # kept, not deleted
    assert (data / "history.db.before-restore").exists()
    back = start(data, "two")
    try:
        names = subprocess.run(
            [sys.executable, "-m", "chat.server", "user", "list", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        assert names == ["alice"]  # as it was at the backup
    finally:
        back.stop()


@pytest.mark.parametrize("damage", ["not a tar", "flipped byte"])
def test_a_damaged_backup_is_refused_and_changes_nothing(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    server = start(data, "one")
    register(server, "alice")
    out = tmp_path / "b.backup"
    assert cli(data, "backup", "--out", str(out), "--with-key").returncode == 0
    assert server.stop() == 0
    blob = bytearray(out.read_bytes())
    if damage == "not a tar":
        blob = bytearray(b"hello" * 100)
    else:
        with tarfile.open(out) as tar:
            member = tar.getmember("users.db")
        blob[member.offset_data + 40] ^= 0xFF
    out.write_bytes(bytes(blob))
    elsewhere = tmp_path / "elsewhere"
    done = cli(elsewhere, "restore", "--from", str(out))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done
    assert not (elsewhere / "users.db").exists() and not (elsewhere / "server.key").exists()


def test_a_cluster_is_backed_up_by_redis(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "chat.server", "backup", "--out", str(tmp_path / "x")]
    done = subprocess.run(
        [*args, "--cluster", "redis://127.0.0.1:1/0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "redis" in done.stderr and done.stderr.count("\n") == 1
