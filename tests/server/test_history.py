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
from chat.server.store.seam import ReadFailed
from chat.server.store.service import StoreService
from chat.server.store.sqlite import Kept, MessageStore, Page
from chat.shared.messages import Msg
from together import run_together

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def service(
    path: Path, cipher: Cipher, history_days: float = 30.0, start: bool = True, **kwargs: object
) -> StoreService:
    """A store service over the file at `path`, its threads started (unless `start` is off)."""
    args: dict[str, object] = {"offline_max": 1000} | kwargs
    store = MessageStore.open(path, KEY, cipher, history_days * 86400.0)
    keeper = StoreService(store, **args)  # type: ignore[arg-type]
    if start:
        keeper.start()
    return keeper


@pytest.fixture
def keeper(path: Path, cipher: Cipher) -> Iterator[StoreService]:
    k = service(path, cipher)
    yield k
    k.stop()


def take(keeper: StoreService, count: int = 1) -> int:
    """`count` ids; `take` never waits, so a refusal (the next block not stored yet) is
    asked again until the writer has stored it."""
    deadline = time.monotonic() + 10
    while (first := keeper.ids.take(count)) is None:
        assert time.monotonic() < deadline, "no ids within 10 s"
        time.sleep(0.001)
    return first


def msg(keeper: StoreService, to: str | tuple[str, ...], text: str, sender: str = "alice") -> Msg:
    return Msg(take(keeper), sender, to, text, time.time())


def kept_durably(keeper: StoreService, kept: Kept) -> bool:
    """Hand `kept` over as a `sent` with queued names does; True once it is on disk."""
    receipt = keeper.keep(kept, durable=True)
    assert receipt is not None
    return bool(receipt.result(5))


def wait_reply(call) -> Page | ReadFailed | None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    box: list[Page | ReadFailed | None] = []

    def reply(page: Page | ReadFailed | None) -> None:
        box.append(page)
        done.set()

    call(reply)
    assert done.wait(10)
    assert len(box) == 1  # answered exactly once
    return box[0]


def on_disk(path: Path, cipher: Cipher, user: str, peer: str) -> list[str]:
    """What a fresh connection (another process would see the same) reads."""
    store = MessageStore.open(path, KEY, cipher)
    try:
        return [m.text for m in store.page(user, peer, None, 200).messages]
    finally:
        store.close()


# --- durability --------------------------------------------------------------------
def test_a_durable_keep_resolves_its_receipt_once_the_message_is_committed(
    keeper: StoreService, path: Path, cipher: Cipher
) -> None:
    results: list[bool] = []
    m = msg(keeper, ("bob",), "for bob")
    receipt = keeper.keep(Kept((m,), ("bob",), ("bob",)), durable=True)
    assert receipt is not None
    receipt.add_done_callback(lambda r: results.append(r.result()))
    assert receipt.result(5) is True
    assert on_disk(path, cipher, "bob", "alice") == ["for bob"]
    assert results == [True]  # told once


def test_a_keep_that_is_not_awaited_gives_no_receipt(keeper: StoreService) -> None:
    assert keeper.keep(Kept((msg(keeper, "*", "to all"),), (), ())) is None


def test_other_messages_reach_the_disk_within_the_flush_delay(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, flush_delay=0.3)
    try:
        keeper.keep(Kept((msg(keeper, "*", "to all"),), (), ()))
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
            keeper.keep(Kept((msg(keeper, "*", f"m{i}"),), (), ()))
        started = time.monotonic()
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 50, r))
        assert isinstance(page, Page)
        assert [m.text for m in page.messages] == [f"m{i}" for i in range(5)]
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
            keeper.keep(Kept((msg(keeper, "*", f"m{i}"),), (), ()))
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 200, r))
        assert isinstance(page, Page) and len(page.messages) == 200 and page.more
        assert commits <= 3, commits
    finally:
        keeper.stop()


def test_stop_stores_what_was_handed_over(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, flush_delay=60.0)
    keeper.keep(Kept((msg(keeper, "*", "last words"),), (), ()))
    keeper.stop()
    assert on_disk(path, cipher, "bob", "*") == ["last words"]


_WRITER = r"""
import sys, time
from pathlib import Path
from chat.server.crypto.cipher import load_cipher
from chat.server.store.service import StoreService
from chat.server.store.sqlite import Kept, MessageStore
from chat.shared.messages import Msg

keeper = StoreService(
    MessageStore.open(Path(sys.argv[1]), bytes(range(32)), load_cipher()), 10**7
)
keeper.start()

def report(mid):
    def on_stored(receipt):
        if receipt.result():
            print(mid, flush=True)
    return on_stored

def take():
    while (first := keeper.ids.take(1)) is None:
        time.sleep(0.001)
    return first

i = 0
while True:
    i += 1
    mid = take()
    m = Msg(mid, "alice", ("bob",), f"durable {mid}", time.time())
    keeper.keep(Kept((m,), ("bob",), ("bob",)), durable=True).add_done_callback(report(mid))
    other = Msg(take(), "carol", "*", "x" * (i % 300), time.time())
    keeper.keep(Kept((other,), (), ()))
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
                m = msg(keeper, ("bob",), f"m{i}")
                assert kept_durably(keeper, Kept((m,), ("bob",), ("bob",)))
        page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
        assert isinstance(page, Page) and [m.text for m in page.messages] == ["m2", "m3", "m4"]
        assert "offline queue of bob is over --offline-max 3" in caplog.text
        # The history keeps them all: the quota is the offline queue's.
        page = wait_reply(lambda r: keeper.read_page("bob", "alice", None, 50, r))
        assert isinstance(page, Page) and len(page.messages) == 5
    finally:
        keeper.stop()


def test_an_ack_empties_the_queue_up_to_its_id(keeper: StoreService) -> None:
    ids = []
    for i in range(3):
        m = msg(keeper, ("bob",), f"m{i}")
        ids.append(m.id)
        assert kept_durably(keeper, Kept((m,), ("bob",), ("bob",)))
    keeper.ack("bob", ids[1])
    page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
    assert isinstance(page, Page) and [m.id for m in page.messages] == [ids[2]]


# --- retention -----------------------------------------------------------------------
def test_messages_older_than_history_days_are_gone_after_a_restart(
    path: Path, cipher: Cipher
) -> None:
    keeper = service(path, cipher)
    old = Msg(take(keeper), "alice", ("bob",), "old", time.time() - 3 * 86400)
    new = msg(keeper, ("bob",), "new")
    assert kept_durably(keeper, Kept((old, new), ("bob",), ("bob",)))
    keeper.stop()
    keeper = service(path, cipher, history_days=2.0)
    try:
        page = wait_reply(lambda r: keeper.read_page("bob", "alice", None, 50, r))
        assert isinstance(page, Page) and [m.text for m in page.messages] == ["new"]
        page = wait_reply(lambda r: keeper.read_offline("bob", 0, r))
        assert isinstance(page, Page) and [m.text for m in page.messages] == ["new"]
    finally:
        keeper.stop()


def test_history_days_zero_keeps_messages_for_ever(path: Path, cipher: Cipher) -> None:
    keeper = service(path, cipher, history_days=0.0)
    try:
        ancient = Msg(take(keeper), "alice", "*", "ancient", 1_000_000.0)
        keeper.keep(Kept((ancient,), (), ()))
        page = wait_reply(lambda r: keeper.read_page("bob", "*", None, 50, r))
        assert isinstance(page, Page) and [m.text for m in page.messages] == ["ancient"]
    finally:
        keeper.stop()


# --- ids -------------------------------------------------------------------------------
def test_ids_after_a_restart_are_above_every_id_given_before_even_unstored_ones(
    path: Path, cipher: Cipher
) -> None:
    keeper = service(path, cipher)
    given = [take(keeper) for _ in range(10)]  # given out, never stored
    keeper.stop()
    keeper = service(path, cipher)
    try:
        assert take(keeper) > max(given)
    finally:
        keeper.stop()


def test_the_next_block_is_reserved_on_disk_before_its_ids_are_given(
    path: Path, cipher: Cipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "ID_BLOCK", 16)
    keeper = service(path, cipher)
    given = [take(keeper, 3) + 2 for _ in range(40)]  # 120 ids: several blocks
    assert given == sorted(given) and len(set(given)) == len(given)
    store = MessageStore.open(path, KEY, cipher)
    try:
        assert store.id_floor() > max(given)  # a restart now would start above them
    finally:
        store.close()
        keeper.stop()


def test_taking_ids_never_waits_for_the_writer(
    path: Path, cipher: Cipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the stored ceiling `take` answers None at once (the send is refused for now),
    and gives ids again once the writer has stored the next block."""
    monkeypatch.setattr(history, "ID_BLOCK", 16)
    keeper = service(path, cipher, start=False)  # no writer yet: nothing more is stored
    try:
        given = [keeper.ids.take(1) for _ in range(16)]
        assert None not in given and len(set(given)) == 16
        started = time.monotonic()
        assert keeper.ids.take(1) is None
        assert time.monotonic() - started < 0.1
        keeper.start()
        assert take(keeper) > max(given)  # type: ignore[type-var]
    finally:
        keeper.stop()


def test_ids_are_unique_and_rise_under_threads(keeper: StoreService) -> None:
    taken: list[int] = []
    lock = threading.Lock()

    def take_many() -> None:
        mine = [take(keeper) for _ in range(2000)]
        assert mine == sorted(mine)
        with lock:
            taken.extend(mine)

    run_together(take_many, [()] * 4)
    assert len(set(taken)) == 8000
