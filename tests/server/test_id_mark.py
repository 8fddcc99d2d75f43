"""The id mark: the message store's id ceiling, copied into the users file.

Protocol v1.1 section 2: ids never go back, even when `history.db` is lost or
restored from an older copy (issue "1 of 6", item 4). Real files, the real
cipher plugin, the real writer thread.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from chat.server.accounts.users_file import StoreError, UserStore, _Codec
from chat.server.crypto.cipher import Cipher, load_cipher
from chat.server.store.service import ID_BLOCK, StoreService
from chat.server.store.sqlite import NO_MARK_FLOOR, MessageStore, MessageStoreError, start_floor

KEY = bytes(range(32))
COST = 10


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


def _users(path: Path, cipher: Cipher) -> UserStore:
    return UserStore.open(path, KEY, cipher, hash_cost_log2=COST)


def _plaintext(path: Path, cipher: Cipher) -> dict[str, object]:
    doc: dict[str, object] = json.loads(_Codec(path, KEY, cipher).open(path.read_bytes()))
    return doc


# --- the users file carries it --------------------------------------------------------
def test_the_mark_is_written_at_once_when_the_file_exists_and_read_back(
    tmp_path: Path, cipher: Cipher
) -> None:
    path = tmp_path / "users.db"
    users = _users(path, cipher)
    assert users.id_mark is None
    users.raise_id_mark(5000)
    assert not path.exists()  # no file, no account: the first write carries it
    assert users.register("alice", "pw")
    assert _plaintext(path, cipher)["ids"] == 5000
    users.raise_id_mark(9000)  # written now: before ids below 9000 are given out
    assert _users(path, cipher).id_mark == 9000
    users.raise_id_mark(7000)  # never goes down
    assert users.id_mark == 9000 and _users(path, cipher).id_mark == 9000
    assert _users(path, cipher).verify("alice", "pw")


def test_a_file_without_a_mark_reads_as_none_and_keeps_its_accounts(
    tmp_path: Path, cipher: Cipher
) -> None:
    """The format older servers wrote (and still read: they look at "users" only)."""
    path = tmp_path / "users.db"
    users = _users(path, cipher)
    assert users.register("alice", "pw")
    assert "ids" not in _plaintext(path, cipher)
    again = _users(path, cipher)
    assert again.id_mark is None and again.verify("alice", "pw")


@pytest.mark.parametrize("bad", [0, -1, "12", 1.5, True, [1]])
def test_a_mark_that_is_not_a_positive_integer_is_a_damaged_file(
    tmp_path: Path, cipher: Cipher, bad: object
) -> None:
    path = tmp_path / "users.db"
    doc = {"format": 1, "users": [], "ids": bad}
    path.write_bytes(_Codec(path, KEY, cipher).seal(json.dumps(doc).encode()))
    with pytest.raises(StoreError, match="undecodable content"):
        _users(path, cipher)


# --- the start decides from it (msgstore.start_floor) ---------------------------------
def test_a_lost_store_next_to_accounts_is_refused_without_the_option(tmp_path: Path) -> None:
    history, users = tmp_path / "history.db", tmp_path / "users.db"
    for make in (lambda: None, lambda: history.write_bytes(b"")):
        make()
        with pytest.raises(MessageStoreError) as info:
            start_floor(history, users, 2, 5000, new_store=False)
        text = str(info.value)
        assert "\n" not in text and "--new-history-store" in text and "2 accounts" in text


def test_the_option_starts_above_the_mark_or_above_any_id_without_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history, users = tmp_path / "history.db", tmp_path / "users.db"
    with caplog.at_level(logging.WARNING, "chat.server.store"):
        assert start_floor(history, users, 2, 5000, new_store=True) == 5000
        assert start_floor(history, users, 2, None, new_store=True) == NO_MARK_FLOOR
    assert "has no id mark" in caplog.text and "history of the old one are gone" in caplog.text


def test_no_accounts_never_saw_a_message_and_an_existing_store_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history, users = tmp_path / "history.db", tmp_path / "users.db"
    assert start_floor(history, users, 0, None, new_store=False) == 1
    assert start_floor(history, users, 0, 700, new_store=False) == 700
    history.write_bytes(b"a store")
    assert start_floor(history, users, 2, None, new_store=False) == 1
    with caplog.at_level(logging.WARNING, "chat.server.store"):
        assert start_floor(history, users, 2, 700, new_store=True) == 700
    assert "it is used as it is" in caplog.text


# --- the writer copies every reserved ceiling before its ids are used ----------------
def test_ids_start_at_the_floor_and_every_block_is_marked_before_use(
    tmp_path: Path, cipher: Cipher
) -> None:
    marks: list[int] = []
    marked = threading.Event()

    def on_reserve(ceiling: int) -> None:
        marks.append(ceiling)
        if len(marks) == 2:
            marked.set()

    store = MessageStore.open(tmp_path / "history.db", KEY, cipher)
    keeper = StoreService(store, 10, floor=5000, on_reserve=on_reserve)
    keeper.start()
    try:
        assert keeper.ids.peek() == 5000
        assert marks == [5000 + ID_BLOCK]  # at start, before any id is given
        first = keeper.ids.take(ID_BLOCK // 2 + 1)  # past half the block: the next one
        assert first == 5000
        assert marked.wait(10)
        assert marks[1] > marks[0] and marks[1] > keeper.ids.peek()
    finally:
        keeper.stop()


def test_a_store_behind_the_mark_goes_on_above_the_mark(
    tmp_path: Path, cipher: Cipher, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.db"
    store = MessageStore.open(path, KEY, cipher)
    with store.transaction():
        store.reserve_ids(1000)  # an old copy: its own ceiling is 1000
    with caplog.at_level(logging.WARNING, "chat.server.store"):
        keeper = StoreService(store, 10, floor=3_000_000)
    try:
        assert keeper.ids.take(1) == 3_000_000
    finally:
        keeper.stop()
    assert "restored from an older copy?" in caplog.text


def test_a_mark_that_cannot_be_written_at_start_fails_the_start(
    tmp_path: Path, cipher: Cipher
) -> None:
    def on_reserve(ceiling: int) -> None:
        raise StoreError("users file x: cannot write (No space left on device)")

    store = MessageStore.open(tmp_path / "history.db", KEY, cipher)
    try:
        with pytest.raises(StoreError, match="No space left"):
            StoreService(store, 10, on_reserve=on_reserve)
    finally:
        store.close()
