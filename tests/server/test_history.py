"""The message store at work: group commit, durability, barriers, quota, retention, ids.

Real writer and reader threads on a real SQLite file. What "on disk" means is
checked the hard way where it matters: a separate process is killed with
SIGKILL and the file is read again.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.server.crypto.cipher import Cipher, load_cipher
from chat.server.store import service as history
from chat.server.store.service import HistoryService
from chat.server.store.sqlite import Kept, MessageStore, Page
from chat.shared.messages import Msg

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def service(
    path: Path, cipher: Cipher, history_days: float = 30.0, **kwargs: object
) -> HistoryService:
    args: dict[str, object] = {"offline_max": 1000} | kwargs
    store = MessageStore.open(path, KEY, cipher, history_days * 86400.0)
    return HistoryService(store, **args)  # type: ignore[arg-type]


@pytest.fixture
def keeper(path: Path, cipher: Cipher) -> Iterator[HistoryService]:
    k = service(path, cipher)
    yield k
    k.stop()


def msg(keeper: HistoryService, to: str | tuple[str, ...], text: str, sender: str = "alice") -> Msg:
    return Msg(keeper.ids.take(1), sender, to, text, time.time())


def wait_reply(call) -> Page | None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    box: list[Page | None] = []

    def reply(page: Page | None) -> None:
        box.append(page)
        done.set()

    call(reply)
    assert done.wait(10)
    return box[0]


def on_disk(path: Path, cipher: Cipher, user: str, peer: str) -> list[str]:
    """What a fresh connection (another process would see the same) reads."""
    store = MessageStore.open(path, KEY, cipher)
    try:
        return [m.text for m in store.page(user, peer, None, 200).messages]
    finally:
        store.close()


# --- durability --------------------------------------------------------------------
def test_a_durable_keep_calls_back_once_the_message_is_committed(
    keeper: HistoryService, path: Path, cipher: Cipher
) -> None:
    stored = threading.Event()
    results: list[bool] = []

    def on_stored(ok: bool) -> None:
        results.append(ok)
        stored.set()

    m = msg(keeper, ("bob",), "for bob")
    keeper.keep([Kept((m,), ("bob",), ("bob",))], on_stored)
    assert stored.wait(5) and results == [True]
    assert on_disk(path, cipher, "bob", "alice") == ["for bob"]


def test_other_messages_reach_the_disk_within_the_flush_delay(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, flush_delay=0.3)
    try:
        keeper.keep([Kept((msg(keeper, "*", "to all"),), (), ())])
        assert on_disk(path, cipher, "bob", "*") == []  # batched: not yet
        deadline = time.monotonic() + 2.0
        while on_disk(path, cipher, "bob", "*") != ["to all"]:
            assert time.monotonic() < deadline, "not on disk within a second"
            time.sleep(0.05)
    finally:
        keeper.stop()


def test_a_read_sees_every_message_handed_over_before_it_even_with_a_long_flush_delay(
    path: Path, cipher: Cipher
) -> None:
    keeper = service(path, cipher, flush_delay=30.0)
    try:
        for i in range(5):
            keeper.keep([Kept((msg(keeper, "*", f"m{i}"),), (), ())])
        started = time.monotonic()
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 50, r))
        assert page is not None and [m.text for m in page.messages] == [f"m{i}" for i in range(5)]
        assert time.monotonic() - started < 5  # the barrier forced the commit
    finally:
        keeper.stop()


def test_messages_are_committed_in_batches(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, flush_delay=0.2)
    commits = 0
    real_commit = keeper._commit

    def counting(batch):  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1
        real_commit(batch)

    keeper._commit = counting  # type: ignore[method-assign]
    try:
        for i in range(500):
            keeper.keep([Kept((msg(keeper, "*", f"m{i}"),), (), ())])
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 200, r))
        assert page is not None and len(page.messages) == 200 and page.more
        assert commits <= 3, commits
    finally:
        keeper.stop()


def test_stop_stores_what_was_handed_over(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, flush_delay=60.0)
    keeper.keep([Kept((msg(keeper, "*", "last words"),), (), ())])
    keeper.stop()
    assert on_disk(path, cipher, "bob", "*") == ["last words"]


_WRITER = r"""
import sys, time
from pathlib import Path
from chat.server.crypto.cipher import load_cipher
from chat.server.store.service import HistoryService
from chat.server.store.sqlite import Kept, MessageStore
from chat.shared.messages import Msg

keeper = HistoryService(
    MessageStore.open(Path(sys.argv[1]), bytes(range(32)), load_cipher()), 10**7
)

def report(mid):
    def on_stored(ok):
        if ok:
            print(mid, flush=True)
    return on_stored

i = 0
while True:
    i += 1
    mid = keeper.ids.take(1)
    m = Msg(mid, "alice", ("bob",), f"durable {mid}", time.time())
    keeper.keep([Kept((m,), ("bob",), ("bob",))], report(mid))
    other = Msg(keeper.ids.take(1), "carol", "*", "x" * (i % 300), time.time())
    keeper.keep([Kept((other,), (), ())])
    if i % 50 == 0:
        time.sleep(0.001)
"""


@pytest.mark.parametrize("run", range(4))
def test_sigkill_at_any_moment_keeps_every_acknowledged_message_and_a_readable_file(
    path: Path, cipher: Cipher, run: int
) -> None:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + random.uniform(0.3, 1.5)
    while time.monotonic() < deadline or len(acknowledged) < 5:
        line = proc.stdout.readline()
        assert line, "the writer died"
        acknowledged.append(int(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = MessageStore.open(path, KEY, cipher)
    try:
        kept: set[int] = set()
        after = 0
        while True:
            page = store.offline("bob", after, 200, 1 << 22)
            kept |= {m.id for m in page.messages}
            if not page.more:
                break
            after = page.last
        assert set(acknowledged) <= kept
        assert store.id_floor() > max(acknowledged)  # ids never go back
    finally:
        store.close()


# --- offline queues: quota ---------------------------------------------------------
def test_past_the_quota_the_oldest_offline_messages_go_and_the_log_says_so(
    path: Path, cipher: Cipher, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = service(path, cipher, offline_max=3)
    try:
        with caplog.at_level(logging.WARNING, "chat.server.store"):
            for i in range(5):
                done = threading.Event()
                m = msg(keeper, ("bob",), f"m{i}")
                keeper.keep([Kept((m,), ("bob",), ("bob",))], lambda ok, done=done: done.set())
                assert done.wait(5)
        page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
        assert page is not None and [m.text for m in page.messages] == ["m2", "m3", "m4"]
        assert "offline queue of bob is over --offline-max 3" in caplog.text
        # The history keeps them all: the quota is the offline queue's.
        page = wait_reply(lambda r: keeper.read_page("bob", "alice", None, 50, r))
        assert page is not None and len(page.messages) == 5
    finally:
        keeper.stop()


def test_an_ack_empties_the_queue_up_to_its_id(keeper: HistoryService) -> None:
    ids = []
    for i in range(3):
        done = threading.Event()
        m = msg(keeper, ("bob",), f"m{i}")
        ids.append(m.id)
        keeper.keep([Kept((m,), ("bob",), ("bob",))], lambda ok, done=done: done.set())
        assert done.wait(5)
    keeper.ack("bob", ids[1])
    page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
    assert page is not None and [m.id for m in page.messages] == [ids[2]]


# --- retention -----------------------------------------------------------------------
def test_messages_older_than_history_days_are_gone_after_a_restart(
    path: Path, cipher: Cipher
) -> None:
    keeper = service(path, cipher)
    old = Msg(keeper.ids.take(1), "alice", ("bob",), "old", time.time() - 3 * 86400)
    new = msg(keeper, ("bob",), "new")
    done = threading.Event()
    keeper.keep([Kept((old, new), ("bob",), ("bob",))], lambda ok: done.set())
    assert done.wait(5)
    keeper.stop()
    keeper = service(path, cipher, history_days=2.0)
    try:
        page = wait_reply(lambda r: keeper.read_page("bob", "alice", None, 50, r))
        assert page is not None and [m.text for m in page.messages] == ["new"]
        page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
        assert page is not None and [m.text for m in page.messages] == ["new"]
    finally:
        keeper.stop()


def test_history_days_zero_keeps_messages_for_ever(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, history_days=0.0)
    try:
        ancient = Msg(keeper.ids.take(1), "alice", "*", "ancient", 1_000_000.0)
        keeper.keep([Kept((ancient,), (), ())])
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 50, r))
        assert page is not None and [m.text for m in page.messages] == ["ancient"]
    finally:
        keeper.stop()


# --- ids -------------------------------------------------------------------------------
def test_ids_after_a_restart_are_above_every_id_given_before_even_unstored_ones(
    path: Path, cipher: Cipher
) -> None:
    keeper = service(path, cipher)
    given = [keeper.ids.take(1) for _ in range(10)]  # given out, never stored
    keeper.stop()
    keeper = service(path, cipher)
    try:
        assert keeper.ids.take(1) > max(given)
    finally:
        keeper.stop()


def test_the_next_block_is_reserved_on_disk_before_its_ids_are_given(
    path: Path, cipher: Cipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "ID_BLOCK", 16)
    keeper = service(path, cipher)
    given = [keeper.ids.take(3) + 2 for _ in range(40)]  # 120 ids: several blocks
    assert given == sorted(given) and len(set(given)) == len(given)
    store = MessageStore.open(path, KEY, cipher)
    try:
        assert store.id_floor() > max(given)  # a restart now would start above them
    finally:
        store.close()
        keeper.stop()


def test_ids_are_unique_and_rise_under_threads(keeper: HistoryService) -> None:
    taken: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [keeper.ids.take(1) for _ in range(2000)]
        assert mine == sorted(mine)
        with lock:
            taken.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(taken)) == 8000
