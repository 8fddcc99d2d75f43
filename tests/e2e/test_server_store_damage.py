"""A lost or damaged message store, from outside: the real server, real files, real damage.

Issue "1 of 6", items 4 and 5. A `history.db` that is gone (deleted or
truncated to 0 bytes) next to a users file with accounts is refused at start
with one line and exit 1, unless `--new-history-store`, which starts an empty
store whose ids go on above every id given before (protocol v1.1 section 2).
Garbage written over pages of the file, the way a failing disk would, is
refused at start; garbage that appears while the server runs is an `error` to
the client that asked and an ERROR line in the log, never an empty answer.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sqlite_pages
from conftest import ServerProc
from e2e.server_support import PASSWORD, messages, next_frame, online, register, request

Start = Callable[..., ServerProc]

QUEUED = 300
TEXT = "a line long enough to fill a few pages of the message store: " * 3  # 183 characters


def _history(tmp_path: Path) -> Path:
    return tmp_path / "history.db"  # the fixture starts the server in tmp_path (the data dir)


def _refused(start_server: Start, *extra: str) -> str:
    """Start the server, expect exit 1 and exactly one line on stderr; return it."""
    failed = start_server(*extra, wait=False)
    assert failed.proc.wait(15) == 1
    err = failed.proc.stderr.read().decode()  # type: ignore[union-attr]
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _ids_seen(server: ServerProc, count: int) -> list[int]:
    """Have alice send `count` messages to bob, both online; the ids bob got."""
    alice = online(server, "alice", register=False)
    bob = online(server, "bob", register=False)
    for i in range(count):
        request(alice, {"type": "send", "id": i, "to": ["bob"], "text": f"m{i}"})
    ids = [m["id"] for m in messages(bob, count)]
    for c in (alice, bob):
        c.send({"type": "bye"})
        c.expect_closed()
    return ids


def _queue_for_bob(server: ServerProc, count: int) -> None:
    """`count` messages from alice to bob, who is offline: each `sent` lists him as queued."""
    alice = online(server, "alice", register=False)
    for i in range(count):
        alice.send({"type": "send", "id": i, "to": ["bob"], "text": f"{i} {TEXT}"})
    for _ in range(count):
        assert next_frame(alice, 30)["queued"] == ["bob"]


def _login_frames(server: ServerProc, name: str) -> tuple[Any, list[dict[str, Any]]]:
    """Log in and read what comes before a ping's pong: the offline catch-up."""
    c = server.client()
    c.login(name, PASSWORD, register=False)
    c.send({"type": "ping"})
    frames = []
    while (f := next_frame(c, 10))["type"] != "pong":
        frames.append(f)
    return c, frames


# --- a lost store (item 4) ----------------------------------------------------------------
def _lose(history: Path, how: str) -> None:
    if how == "truncated":
        with open(history, "r+b") as f:
            f.truncate(0)
    else:
        for extra in ("", "-wal", "-shm"):
            Path(f"{history}{extra}").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_a_lost_history_file_next_to_accounts_is_one_line_and_exit_1(
    start_server: Start, tmp_path: Path, how: str
) -> None:
    server = start_server()
    register(server, "alice", "bob")
    _queue_for_bob(server, 3)
    assert server.stop() == 0
    history = _history(tmp_path)
    _lose(history, how)
    before = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("history"))
    err = _refused(start_server)
    assert "history file history.db is missing or empty" in err, err
    assert "--new-history-store" in err and "2 accounts" in err
    # Nothing was made in its place: the operator can still restore the file.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("history")) == before
    assert not history.exists() or history.stat().st_size == 0


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_new_history_store_starts_and_ids_go_on_above_every_id_given_before(
    start_server: Start, tmp_path: Path, how: str
) -> None:
    server = start_server()
    register(server, "alice", "bob")
    given = _ids_seen(server, 3)
    assert server.stop() == 0
    server = start_server()  # a second block of ids: the lost store's newest ones
    given += _ids_seen(server, 3)
    assert server.stop() == 0
    _lose(_history(tmp_path), how)
    server = start_server("--new-history-store")
    assert "--new-history-store: a new, empty message store" in server.log()
    (after,) = _ids_seen(server, 1)
    assert after > max(given), (after, given)
    assert server.stop() == 0
    # The new store exists now: a start without the option is a start as any other.
    server = start_server()
    (again,) = _ids_seen(server, 1)
    assert again > after


def test_a_users_file_without_an_id_mark_and_a_lost_store(
    start_server: Start, tmp_path: Path
) -> None:
    """A users file kept by a server without a message store (`--no-history`) has no id
    mark, as one written before marks existed: nothing says how high ids went."""
    server = start_server("--no-history")
    register(server, "alice", "bob")
    assert server.stop() == 0
    assert not _history(tmp_path).exists()
    err = _refused(start_server)
    assert "--new-history-store" in err
    server = start_server("--new-history-store")
    assert "has no id mark" in server.log()
    (first,) = _ids_seen(server, 1)
    assert first >= 1 << 52


def test_a_history_file_restored_from_an_older_copy_never_gives_an_id_again(
    start_server: Start, tmp_path: Path
) -> None:
    server = start_server()
    register(server, "alice", "bob")
    _ids_seen(server, 2)
    assert server.stop() == 0
    history = _history(tmp_path)
    backup = tmp_path / "backup.db"
    shutil.copyfile(history, backup)
    server = start_server()
    newer = _ids_seen(server, 3)
    assert server.stop() == 0
    for extra in ("-wal", "-shm"):
        Path(f"{history}{extra}").unlink(missing_ok=True)
    shutil.copyfile(backup, history)  # the operator restores last night's copy
    server = start_server()
    assert "restored from an older copy?" in server.log()
    (after,) = _ids_seen(server, 1)
    assert after > max(newer), (after, newer)


# --- a damaged store (item 5) -------------------------------------------------------------
def test_damaged_pages_in_the_middle_of_the_file_refuse_the_start_with_one_line(
    start_server: Start, tmp_path: Path
) -> None:
    server = start_server()
    register(server, "alice", "bob")
    _queue_for_bob(server, QUEUED)
    assert server.stop() == 0
    history = _history(tmp_path)
    pages = history.stat().st_size // sqlite_pages.page_size(history)
    assert pages >= 20, pages
    sqlite_pages.garbage(history, [pages // 2 - 1, pages // 2, pages // 2 + 1], seed=5)
    damaged = history.read_bytes()
    err = _refused(start_server)
    assert "history file history.db: damaged (PRAGMA quick_check: " in err, err
    assert "--new-history-store" in err
    assert history.read_bytes() == damaged  # left as it was, for a salvage or a look


def test_pages_damaged_while_the_server_runs_are_an_error_to_the_client_and_in_the_log(
    start_server: Start, tmp_path: Path
) -> None:
    server = start_server()
    register(server, "alice", "bob")
    _queue_for_bob(server, QUEUED)
    assert server.stop() == 0
    server = start_server()  # the start-up check passes: the file is sound
    history = _history(tmp_path)
    roots = sqlite_pages.roots(history)
    offline = sqlite_pages.leaves(history, roots["offline"])
    chunks = sqlite_pages.leaves(history, roots["chunks"])
    # Pages no connection of the server has read since its start-up check.
    sqlite_pages.garbage(history, offline + chunks, seed=7)

    bob, frames = _login_frames(server, "bob")
    assert [f["type"] for f in frames] == ["error"], frames
    assert frames[0]["code"] == "rate_limited" and "id" not in frames[0], frames
    assert "message store" in frames[0]["message"] and "kept" in frames[0]["message"]
    answer = request(bob, {"type": "history", "id": "h", "with": "alice"})
    assert answer["type"] == "error" and answer["id"] == "h", answer
    assert answer["code"] == "rate_limited" and "message store" in answer["message"]
    assert request(bob, {"type": "ping"}) == {"type": "pong"}  # the connection goes on

    log = server.log()
    assert "ERROR chat.server.store: message store: cannot read the offline queue of bob" in log
    assert "ERROR chat.server.store: message store: cannot read the history of bob" in log
    assert "database disk image is malformed" in log
