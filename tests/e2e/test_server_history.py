"""Protocol v1.1 sections 2-5 from outside: the real server on loopback, real files.

Offline delivery, history, ids across restarts, SIGKILL right after a durable
`sent`, nothing in clear at rest, a wrong key, retention and the quota.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import (
    PASSWORD,
    assert_error,
    messages,
    next_frame,
    online,
    register,
    request,
)

Start = Callable[..., ServerProc]


def history(client: Any, peer: str, **fields: Any) -> dict[str, Any]:
    """The answer to a history request (live messages on the way are skipped)."""
    answer = request(client, {"type": "history", "id": "h", "with": peer} | fields)
    while answer["type"] == "msg":
        answer = next_frame(client)
    assert answer["type"] == "history" and answer["id"] == "h", answer
    return answer


def send_msg(client: Any, to: str | list[str], text: str, msg_id: Any = "m1") -> dict[str, Any]:
    """Send and return the `sent` (messages that arrive meanwhile are skipped)."""
    answer = request(client, {"type": "send", "id": msg_id, "to": to, "text": text})
    while answer["type"] == "msg":
        answer = next_frame(client)
    assert answer["type"] == "sent" and answer["id"] == msg_id, answer
    return answer


def texts(page: dict[str, Any]) -> list[str]:
    return [m["text"] for m in page["messages"]]


def login_frames(server: ServerProc, name: str) -> tuple[Any, list[dict[str, Any]]]:
    """Log in and read what comes before a ping's pong: the offline catch-up."""
    c = server.client()
    c.login(name, PASSWORD, register=False)
    c.send({"type": "ping"})
    frames = []
    while (f := next_frame(c))["type"] != "pong":
        frames.append(f)
    return c, frames


# --- offline delivery (section 3) ------------------------------------------------------
def test_queued_names_are_registered_offline_users_and_unknown_names_only_missing(
    server: ServerProc,
) -> None:
    register(server, "bob")
    alice, carol = online(server, "alice"), online(server, "carol")
    sent = send_msg(alice, ["bob", "zed", "carol"], "hi all three")
    assert sent["delivered"] == ["carol"]
    assert sent["missing"] == ["bob", "zed"] and sent["queued"] == ["bob"]
    assert send_msg(alice, "*", "to all")["queued"] == []
    assert [m["text"] for m in messages(carol, 2)] == ["hi all three", "to all"]


def test_offline_messages_arrive_marked_oldest_first_before_live_ones_and_go_on_ack(
    server: ServerProc,
) -> None:
    register(server, "bob")
    alice = online(server, "alice")
    ids = [send_msg(alice, ["bob"], f"while away {i}", i)["id"] for i in range(3)]
    assert ids == [0, 1, 2]
    bob, frames = login_frames(server, "bob")
    assert [f["text"] for f in frames] == ["while away 0", "while away 1", "while away 2"]
    assert all(f["type"] == "msg" and f["offline"] is True for f in frames)
    send_msg(alice, ["bob"], "live now", "live")
    (live,) = messages(bob, 1)
    assert live["text"] == "live now" and "offline" not in live
    assert live["id"] > frames[-1]["id"]
    bob.send({"type": "offline_ack", "upto": frames[1]["id"]})
    bob.send({"type": "bye"})
    bob.expect_closed()
    _, again = login_frames(server, "bob")
    assert [f["text"] for f in again] == ["while away 2"]  # acked ones are gone


def test_hundreds_of_big_offline_messages_all_arrive_before_a_live_one_without_a_drop(
    start_server: Start,
) -> None:
    """600 x 4 KB queued (2.4 MB) through a 1 MiB send buffer: paged as the socket drains."""
    server = start_server("--max-outbuf", str(1 << 20), "--rate-limit", "0")
    register(server, "bob")
    alice = online(server, "alice")
    text = "ж" * 2000  # 4 KB in UTF-8
    for i in range(600):
        alice.send({"type": "send", "id": i, "to": ["bob"], "text": text})
    for _ in range(600):
        assert next_frame(alice, 30)["queued"] == ["bob"]
    bob = server.client()
    bob.login("bob", PASSWORD, register=False)
    send_msg(alice, ["bob"], "live after them", "live")
    got = messages(bob, 601, timeout=60)
    assert all(m.get("offline") is True for m in got[:600])
    assert got[600]["text"] == "live after them" and "offline" not in got[600]
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)


def test_a_sigkill_right_after_a_queued_sent_loses_nothing(start_server: Start) -> None:
    server = start_server()
    register(server, "bob")
    alice = online(server, "alice")
    acknowledged = []
    for round_ in range(5):
        for i in range(20):
            alice.send(
                {"type": "send", "id": f"{round_}.{i}", "to": ["bob"], "text": f"{round_}.{i}"}
            )
        for _ in range(20):
            sent = next_frame(alice)
            assert sent["queued"] == ["bob"], sent
            acknowledged.append(sent["id"])
        server.stop(signal.SIGKILL)
        server = start_server()
        alice = online(server, "alice", register=False)
    _, frames = login_frames(server, "bob")
    assert [f["text"] for f in frames] == acknowledged


# --- ids (section 2) ---------------------------------------------------------------------
def test_ids_after_a_restart_are_greater_than_every_id_before_it(start_server: Start) -> None:
    server = start_server()
    alice, bob = online(server, "alice"), online(server, "bob")
    for i in range(3):
        send_msg(alice, "*", f"m{i}", i)
    before = [m["id"] for m in messages(bob, 3)]
    server.stop(signal.SIGKILL)
    server = start_server()
    alice = online(server, "alice", register=False)
    bob = online(server, "bob", register=False)
    send_msg(alice, "*", "after", "after")
    (after,) = messages(bob, 1)
    assert after["id"] > max(before)


# --- history (section 4) -------------------------------------------------------------------
def test_history_survives_a_restart_and_follows_the_privacy_rule(start_server: Start) -> None:
    server = start_server()
    alice, bob, carol = online(server, "alice"), online(server, "bob"), online(server, "carol")
    send_msg(alice, ["bob"], "a to b")
    send_msg(alice, ["bob", "carol"], "a to b and c")
    messages(carol, 1)
    send_msg(carol, ["bob"], "c to b")
    messages(bob, 3)
    send_msg(bob, "*", "b to all")
    assert server.stop() == 0
    server = start_server()
    alice = online(server, "alice", register=False)
    bob = online(server, "bob", register=False)
    carol = online(server, "carol", register=False)
    assert texts(history(alice, "bob")) == ["a to b", "a to b and c"]
    assert texts(history(bob, "alice")) == ["a to b", "a to b and c"]
    assert texts(history(carol, "alice")) == ["a to b and c"]
    assert texts(history(carol, "bob")) == ["c to b"]
    assert texts(history(alice, "carol")) == ["a to b and c"]
    assert texts(history(alice, "*")) == ["b to all"]
    page = history(alice, "bob")["messages"][0]
    assert set(page) == {"id", "from", "to", "text", "ts"}
    assert page["from"] == "alice" and page["to"] == ["bob"] and isinstance(page["ts"], float)


def test_history_pages_back_with_before_and_says_when_more_exist(server: ServerProc) -> None:
    alice, bob = online(server, "alice"), online(server, "bob")
    for i in range(25):
        send_msg(alice, "*", f"m{i}", i)
    newest = history(bob, "*", limit=10)
    assert texts(newest) == [f"m{i}" for i in range(15, 25)] and newest["more"] is True
    older = history(bob, "*", limit=10, before=newest["messages"][0]["id"])
    assert texts(older) == [f"m{i}" for i in range(5, 15)] and older["more"] is True
    oldest = history(bob, "*", limit=10, before=older["messages"][0]["id"])
    assert texts(oldest) == [f"m{i}" for i in range(5)] and oldest["more"] is False
    assert len(history(bob, "*")["messages"]) == 25  # limit 50 by default


@pytest.mark.parametrize(
    "fields",
    [{"limit": 0}, {"limit": 201}, {"before": "x"}, {"with": "no such name!"}, {"with": 3}],
)
def test_bad_history_fields_are_bad_request_with_the_id(
    server: ServerProc, fields: dict[str, Any]
) -> None:
    alice = online(server, "alice")
    answer = request(alice, {"type": "history", "id": 77, "with": "*"} | fields)
    assert_error(answer, "bad_request", 77)
    assert request(alice, {"type": "ping"}) == {"type": "pong"}


def test_history_outside_chat_is_refused_with_the_id(server: ServerProc) -> None:
    c = server.client()
    answer = request(c, {"type": "history", "id": "early", "with": "*"})
    assert_error(answer, "not_authenticated", "early")


# --- at rest (section 5) --------------------------------------------------------------------
def _data_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _start_in(start_server: Start, tmp_path: Path, *extra: str) -> ServerProc:
    data = tmp_path / "data"
    return start_server(
        "--data-dir",
        str(data),
        *extra,
        users_file=data / "users.db",
        key_file=data / "server.key",
    )


def test_nothing_is_in_clear_in_any_file_of_the_data_folder(
    start_server: Start, tmp_path: Path
) -> None:
    server = _start_in(start_server, tmp_path)
    register(server, "dave")
    alice, bob = online(server, "alice"), online(server, "bob")
    secrets = ["the door code is 4711", "встреча в полночь"]
    send_msg(alice, ["bob"], secrets[0])
    send_msg(bob, ["alice", "dave"], secrets[1])
    send_msg(bob, "*", secrets[0] + " for all")
    looked_at = dict(_data_files(tmp_path / "data"))  # while running: WAL included
    assert server.stop() == 0
    looked_at |= {f"after:{k}": v for k, v in _data_files(tmp_path / "data").items()}
    assert any("history.db" in name for name in looked_at)
    for name, data in looked_at.items():
        for secret in [*secrets, "alice", "bob", "dave"]:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                assert secret.encode(encoding) not in data, (name, secret, encoding)


def test_a_wrong_key_changes_no_byte_of_the_store(start_server: Start, tmp_path: Path) -> None:
    server = _start_in(start_server, tmp_path)
    alice = online(server, "alice")
    online(server, "bob")
    send_msg(alice, ["bob"], "kept")
    assert server.stop() == 0
    data = tmp_path / "data"
    before = _data_files(data)
    modes = {p.name: p.stat().st_mode for p in data.iterdir()}
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(bytes(range(100, 132)))
    wrong.chmod(0o600)
    failed = start_server(
        "--data-dir", str(data), users_file=data / "users.db", key_file=wrong, wait=False
    )
    assert failed.proc.wait(15) != 0
    err = failed.proc.stderr.read().decode()  # type: ignore[union-attr]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _data_files(data) == before
    assert {p.name: p.stat().st_mode for p in data.iterdir()} == modes


def test_a_wrong_key_for_the_history_file_alone_is_one_line_and_changes_nothing(
    start_server: Start, tmp_path: Path
) -> None:
    """A message store moved next to another server's users file and key."""
    first = _start_in(start_server, tmp_path)
    send_msg(online(first, "alice"), "*", "x")
    assert first.stop() == 0
    other = tmp_path / "other"
    second = start_server(
        "--data-dir",
        str(other),
        users_file=other / "users.db",
        key_file=other / "server.key",
    )
    online(second, "zoe")
    assert second.stop() == 0
    moved = tmp_path / "data" / "history.db"
    before = moved.read_bytes()
    failed = start_server(
        "--data-dir",
        str(other),
        "--history-file",
        str(moved),
        users_file=other / "users.db",
        key_file=other / "server.key",
        wait=False,
    )
    assert failed.proc.wait(15) == 1
    err = failed.proc.stderr.read().decode()  # type: ignore[union-attr]
    assert err.count("\n") == 1 and "wrong key" in err and str(moved) in err
    assert moved.read_bytes() == before


# --- limits -------------------------------------------------------------------------------------
def test_past_offline_max_the_oldest_are_dropped_and_the_log_says_so(
    start_server: Start,
) -> None:
    server = start_server("--offline-max", "3")
    register(server, "bob")
    alice = online(server, "alice")
    for i in range(5):
        send_msg(alice, ["bob"], f"m{i}", i)
    _, frames = login_frames(server, "bob")
    assert [f["text"] for f in frames] == ["m2", "m3", "m4"]
    assert "offline queue of bob is over --offline-max 3: dropped" in server.log()


def test_messages_past_history_days_are_gone_after_a_restart(start_server: Start) -> None:
    server = start_server()
    register(server, "bob")
    alice = online(server, "alice")
    send_msg(alice, ["bob"], "soon too old")
    send_msg(alice, "*", "public, soon too old")
    assert server.stop() == 0
    time.sleep(1.0)
    server = start_server("--history-days", "0.00001")  # 0.864 s
    alice = online(server, "alice", register=False)
    assert texts(history(alice, "bob")) == [] and texts(history(alice, "*")) == []
    _, frames = login_frames(server, "bob")
    assert frames == []
    assert "removed 2 messages older than" in server.log()


def test_without_a_store_nothing_is_queued_and_no_file_is_made(
    start_server: Start, tmp_path: Path
) -> None:
    server = start_server("--no-history")
    register(server, "bob")
    alice = online(server, "alice")
    assert send_msg(alice, ["bob"], "lost")["queued"] == []
    assert texts(history(alice, "bob")) == []
    assert not (tmp_path / "history.db").exists()
