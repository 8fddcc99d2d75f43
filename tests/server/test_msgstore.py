"""The message store's file: format, privacy rule, blind indexes, tampering, retention.

Real SQLite files in a temporary folder and the real cipher plugin; no threads
(tests/server/test_history.py runs the writer and readers).
"""

from __future__ import annotations

import logging
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlite_pages
from chat.server.crypto.cipher import Cipher, load_cipher
from chat.server.store.sqlite import (
    CHECK_BUDGET,
    CHUNK_MESSAGES,
    Kept,
    MessageStore,
    MessageStoreError,
    is_damage,
)
from chat.shared.messages import Msg

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def cipher() -> Cipher:
    return load_cipher()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.db"


@pytest.fixture
def store(path: Path, cipher: Cipher) -> Iterator[MessageStore]:
    s = MessageStore.open(path, KEY, cipher)
    yield s
    s.close()


def keep(store: MessageStore, *kept: Kept) -> None:
    with store.transaction():
        store.put(kept)


def private(msg_id: int, sender: str, to: tuple[str, ...], text: str, queued: tuple[str, ...] = ()):
    named = tuple(n for n in to if n != sender)
    return Kept((Msg(msg_id, sender, to, text, T0 + msg_id),), named, queued)


def public(msg_id: int, sender: str, text: str) -> Kept:
    return Kept((Msg(msg_id, sender, "*", text, T0 + msg_id),), (), ())


def texts(page) -> list[str]:
    return [m.text for m in page.messages]


# --- the privacy rule (protocol v1.1 section 4) --------------------------------------
@pytest.fixture
def three(store: MessageStore) -> MessageStore:
    keep(
        store,
        public(1, "alice", "all: hello"),
        private(2, "alice", ("bob",), "alice to bob"),
        private(3, "alice", ("bob", "carol"), "alice to bob and carol"),
        private(4, "carol", ("bob",), "carol to bob"),
        private(5, "bob", ("alice",), "bob to alice"),
        public(6, "carol", "all: bye"),
    )
    return store


def test_with_star_gives_only_messages_to_everyone(three: MessageStore) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        assert texts(three.page(user, "*", None, 50)) == ["all: hello", "all: bye"]


def test_with_a_name_gives_both_directions_and_shared_groups(three: MessageStore) -> None:
    expected = ["alice to bob", "alice to bob and carol", "bob to alice"]
    assert texts(three.page("alice", "bob", None, 50)) == expected
    assert texts(three.page("bob", "alice", None, 50)) == expected


def test_a_group_member_never_sees_the_other_members_pair_unless_named_by_its_sender(
    three: MessageStore,
) -> None:
    # carol was named by alice: she sees it with alice, not with bob (bob did not send it).
    assert texts(three.page("carol", "alice", None, 50)) == ["alice to bob and carol"]
    assert texts(three.page("carol", "bob", None, 50)) == ["carol to bob"]
    assert texts(three.page("bob", "carol", None, 50)) == ["carol to bob"]


def test_a_user_never_sees_a_conversation_they_are_not_in(three: MessageStore) -> None:
    for peer in ("alice", "bob", "carol"):
        assert texts(three.page("dave", peer, None, 50)) == []
    assert texts(three.page("alice", "alice", None, 50)) == []


# --- pages -------------------------------------------------------------------------
def test_pages_go_back_with_before_oldest_first_and_say_when_more_exist(
    store: MessageStore,
) -> None:
    keep(store, *(public(i, "alice", f"m{i}") for i in range(1, 11)))
    newest = store.page("bob", "*", None, 4)
    assert texts(newest) == ["m7", "m8", "m9", "m10"] and newest.more
    older = store.page("bob", "*", newest.messages[0].id, 4)
    assert texts(older) == ["m3", "m4", "m5", "m6"] and older.more
    oldest = store.page("bob", "*", older.messages[0].id, 4)
    assert texts(oldest) == ["m1", "m2"] and not oldest.more
    assert texts(store.page("bob", "*", 1, 4)) == [] and not store.page("bob", "*", 1, 4).more
    exact = store.page("bob", "*", 5, 4)
    assert texts(exact) == ["m1", "m2", "m3", "m4"] and not exact.more


@pytest.mark.parametrize("before", [-5, 0, 2**63, 2**80])
def test_any_integer_before_is_answered(store: MessageStore, before: int) -> None:
    keep(store, public(1, "alice", "x"))
    page = store.page("bob", "*", before, 10)
    assert texts(page) == (["x"] if before > 1 else [])


def test_a_message_keeps_every_field_as_sent(store: MessageStore) -> None:
    keep(store, private(7, "alice", ("bob", "zed", "alice"), "привет 你好 \U0001f600"))
    (msg,) = store.page("bob", "alice", None, 5).messages
    assert msg == Msg(7, "alice", ("bob", "zed", "alice"), "привет 你好 \U0001f600", T0 + 7)


# --- offline queues ----------------------------------------------------------------
def test_offline_entries_come_oldest_first_marked_and_go_on_ack(store: MessageStore) -> None:
    keep(
        store,
        private(1, "alice", ("bob",), "one", queued=("bob",)),
        private(2, "carol", ("bob", "dave"), "two", queued=("bob", "dave")),
        private(3, "alice", ("bob",), "three", queued=("bob",)),
    )
    page = store.offline("bob", 0, 10, 1 << 20)
    assert texts(page) == ["one", "two", "three"] and not page.more
    assert all(m.offline for m in page.messages) and page.last == 3
    assert texts(store.offline("dave", 0, 10, 1 << 20)) == ["two"]
    with store.transaction():
        assert store.ack(store.owner("bob"), 2) == 2
    assert texts(store.offline("bob", 0, 10, 1 << 20)) == ["three"]
    with store.transaction():
        assert store.ack(store.owner("bob"), 2**70) == 1  # any int: nothing left
    assert texts(store.offline("bob", 0, 10, 1 << 20)) == []


def test_offline_pages_are_bounded_by_count_and_bytes(store: MessageStore) -> None:
    keep(store, *(private(i, "alice", ("bob",), "x" * 1000, ("bob",)) for i in range(1, 8)))
    page = store.offline("bob", 0, 3, 1 << 20)
    assert [m.id for m in page.messages] == [1, 2, 3] and page.more and page.last == 3
    page = store.offline("bob", page.last, 100, 2500)  # two bodies fit
    assert [m.id for m in page.messages] == [4, 5] and page.more and page.last == 5
    page = store.offline("bob", page.last, 100, 10)  # at least one, whatever its size
    assert [m.id for m in page.messages] == [6] and page.more


def test_the_quota_drops_the_oldest(store: MessageStore) -> None:
    keep(store, *(private(i, "alice", ("bob",), f"m{i}", ("bob",)) for i in range(1, 6)))
    owner = store.owner("bob")
    with store.transaction():
        assert store.trim_queue(owner, 3) == 2
        assert store.trim_queue(owner, 3) == 0
    assert texts(store.offline("bob", 0, 10, 1 << 20)) == ["m3", "m4", "m5"]


# --- retention ---------------------------------------------------------------------
def test_retention_removes_old_messages_from_history_and_offline_queues(
    store: MessageStore,
) -> None:
    keep(store, private(1, "alice", ("bob",), "old private", ("bob",)), public(2, "alice", "old"))
    keep(store, private(3, "alice", ("bob",), "new private", ("bob",)), public(4, "alice", "new"))
    assert store.purge_before(T0 + 2.5) == 2
    assert texts(store.page("bob", "*", None, 10)) == ["new"]
    assert texts(store.page("bob", "alice", None, 10)) == ["new private"]
    assert texts(store.offline("bob", 0, 10, 1 << 20)) == ["new private"]
    assert store.purge_before(T0 + 2.5) == 0


def test_retention_goes_by_chunk_and_stops_at_the_first_young_one(store: MessageStore) -> None:
    """4,500 messages to everyone in one batch: chunks of 256; a chunk goes when its newest
    message is past the cutoff, so at most one chunk's worth is kept a little longer."""
    keep(store, *(public(i, "alice", f"m{i}") for i in range(1, 4501)))
    assert store.purge_before(T0 + 4000.5) == 15 * CHUNK_MESSAGES
    oldest = store.page("bob", "*", 15 * CHUNK_MESSAGES + 2, 5)
    assert texts(oldest) == [f"m{15 * CHUNK_MESSAGES + 1}"] and not oldest.more


# --- ids -----------------------------------------------------------------------------
def test_the_id_floor_is_above_the_reserved_ceiling_and_every_stored_id(
    store: MessageStore,
) -> None:
    assert store.id_floor() == 1
    keep(store, public(41, "alice", "x"))
    assert store.id_floor() == 42
    with store.transaction():
        store.reserve_ids(1000)
    assert store.id_floor() == 1000


# --- at rest -------------------------------------------------------------------------
SECRETS = ["alice", "bob", "carol", "the door code is 4711", "привет"]


def _all_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_nothing_is_in_clear_in_the_file_or_its_wal(path: Path, cipher: Cipher) -> None:
    store = MessageStore.open(path, KEY, cipher)
    keep(
        store,
        private(1, "alice", ("bob",), "the door code is 4711", ("bob",)),
        private(2, "carol", ("alice", "bob"), "привет", ()),
        public(3, "bob", "the door code is 4711"),
    )
    files = _all_bytes(path.parent)  # while open: the WAL holds the rows
    assert any(name.endswith("-wal") for name in files)
    store.close()
    files |= {f"closed:{k}": v for k, v in _all_bytes(path.parent).items()}
    for name, data in files.items():
        for secret in SECRETS:
            assert secret.encode() not in data, (name, secret)
            assert secret.encode("utf-16-le") not in data, (name, secret)


def test_the_file_and_its_sidecars_are_private(path: Path, cipher: Cipher) -> None:
    store = MessageStore.open(path, KEY, cipher)
    keep(store, public(1, "alice", "x"))
    reader = store.reader()
    reader.page("bob", "*", None, 5)
    for p in path.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    reader.close()
    store.close()


def test_a_wrong_key_is_refused_and_changes_no_byte(path: Path, cipher: Cipher) -> None:
    store = MessageStore.open(path, KEY, cipher)
    keep(store, public(1, "alice", "x"))
    store.close()
    before = _all_bytes(path.parent)
    with pytest.raises(MessageStoreError, match="wrong key"):
        MessageStore.check(path, OTHER_KEY, cipher)
    with pytest.raises(MessageStoreError, match="wrong key"):
        MessageStore.open(path, OTHER_KEY, cipher)
    assert _all_bytes(path.parent) == before
    MessageStore.check(path, KEY, cipher)  # the right key still opens it


def test_a_wrong_key_changes_no_byte_even_with_a_wal_left_by_a_crash(
    path: Path, cipher: Cipher
) -> None:
    store = MessageStore.open(path, KEY, cipher)
    keep(store, public(1, "alice", "x"))
    # Copy the files while open, as a SIGKILL would leave them (a WAL not checkpointed).
    crashed = path.parent.parent / "crashed"
    crashed.mkdir()
    for name, data in _all_bytes(path.parent).items():
        (crashed / name).write_bytes(data)
    store.close()
    before = _all_bytes(crashed)
    assert "history.db-wal" in before
    with pytest.raises(MessageStoreError, match="wrong key"):
        MessageStore.open(crashed / "history.db", OTHER_KEY, cipher)
    assert _all_bytes(crashed) == before
    reopened = MessageStore.open(crashed / "history.db", KEY, cipher)
    assert texts(reopened.page("bob", "*", None, 5)) == ["x"]
    reopened.close()


def test_a_file_that_is_not_a_store_is_one_line(path: Path, cipher: Cipher) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MessageStoreError, match="not a readable message store"):
        MessageStore.open(path, KEY, cipher)


# --- tampering is reported, never shown --------------------------------------------
def test_a_damaged_chunk_is_left_out_and_logged(
    store: MessageStore, caplog: pytest.LogCaptureFixture
) -> None:
    keep(store, public(1, "alice", "first"))
    keep(store, public(2, "alice", "second"))
    body = bytearray(store._conn.execute("SELECT body FROM chunks WHERE first = 1").fetchone()[0])
    body[20] ^= 0x01
    store._conn.execute("UPDATE chunks SET body = ? WHERE first = 1", (bytes(body),))
    with caplog.at_level(logging.ERROR, "chat.server.store"):
        assert texts(store.page("bob", "*", None, 5)) == ["second"]
    assert "messages 1..1 are damaged" in caplog.text


def test_a_chunk_moved_into_another_conversation_is_not_shown_there(
    store: MessageStore, caplog: pytest.LogCaptureFixture
) -> None:
    keep(store, private(1, "alice", ("bob",), "only for bob"))
    # Someone with write access to the file moves it into carol's conversation with alice.
    store._conn.execute("UPDATE chunks SET conv = ?", (store.conversation("carol", "alice"),))
    with caplog.at_level(logging.ERROR, "chat.server.store"):
        assert texts(store.page("carol", "alice", None, 5)) == []
    assert "messages 1..1 are damaged" in caplog.text


def test_chunks_hold_one_conversation_and_at_most_256_messages(store: MessageStore) -> None:
    keep(
        store,
        *(public(i, "alice", f"m{i}") for i in range(1, 301)),
        private(301, "alice", ("bob", "carol"), "group"),
    )
    rows = store._conn.execute("SELECT conv, first, last, n FROM chunks ORDER BY seq").fetchall()
    everyone = store.broadcast()
    assert [(bytes(c) == everyone, f, last, n) for c, f, last, n in rows[:2]] == [
        (True, 1, 256, 256),
        (True, 257, 300, 44),
    ]
    pairs = {bytes(c) for c, *_ in rows[2:]}
    assert pairs == {store.conversation("alice", "bob"), store.conversation("alice", "carol")}


def test_blind_indexes_depend_on_the_key(path: Path, cipher: Cipher, tmp_path: Path) -> None:
    one = MessageStore.open(path, KEY, cipher)
    two = MessageStore.open(tmp_path / "other.db", OTHER_KEY, cipher)
    assert one.conversation("alice", "bob") == one.conversation("bob", "alice")
    assert one.conversation("alice", "bob") != two.conversation("alice", "bob")
    assert one.owner("bob") != two.owner("bob") and one.owner("bob") != one.owner("alice")
    one.close()
    two.close()


def test_sqlite_holds_no_name_even_in_its_schema_or_meta(path: Path, cipher: Cipher) -> None:
    store = MessageStore.open(path, KEY, cipher)
    keep(store, private(1, "alice", ("bob",), "hi", ("bob",)))
    store.close()
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT k, v FROM meta"))
    conn.close()
    assert set(meta) == {"format", "cipher", "check", "own_from"}
    assert meta["own_from"] == b"0"  # a new file: its `own` index covers every message


# --- a damaged file is refused at open (issue "1 of 6", item 5) ------------------------
def _queued(path: Path, cipher: Cipher, count: int) -> None:
    """`count` messages from alice queued for bob, one chunk each: a file of many pages."""
    store = MessageStore.open(path, KEY, cipher)
    for i in range(1, count + 1):
        keep(store, private(i, "alice", ("bob",), f"{i} " + "x" * 200, queued=("bob",)))
    store.close()


@pytest.mark.parametrize("budget", [CHECK_BUDGET, 0.0], ids=["quick_check", "read_paths"])
def test_a_damaged_offline_page_is_refused_at_open_before_any_write(
    path: Path, cipher: Cipher, budget: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Within the budget `PRAGMA quick_check` finds it; past it (here at once) the walk of
    the pages the server reads does."""
    _queued(path, cipher, 2000)
    leaves = sqlite_pages.leaves(path, sqlite_pages.roots(path)["offline"])
    assert len(leaves) >= 3
    sqlite_pages.garbage(path, [leaves[len(leaves) // 2]], seed=3)
    damaged = path.read_bytes()
    with (
        caplog.at_level(logging.INFO, "chat.server.store"),
        pytest.raises(MessageStoreError) as info,
    ):
        MessageStore.open(path, KEY, cipher, check_budget=budget)
    text = str(info.value)
    assert text.startswith(f"history file {path}: damaged (") and "\n" not in text
    assert "--new-history-store" in text
    assert ("did not finish within" in caplog.text) is (budget == 0)
    assert path.read_bytes() == damaged


def test_a_sound_file_opens_whether_quick_check_finishes_or_not(path: Path, cipher: Cipher) -> None:
    _queued(path, cipher, 300)
    for budget in (CHECK_BUDGET, 0.0):
        store = MessageStore.open(path, KEY, cipher, check_budget=budget)
        assert len(store.offline("bob", 0, 1000, 1 << 20).messages) == 300
        store.close()


def test_a_damaged_page_met_by_a_read_raises_it_is_never_an_empty_answer(
    path: Path, cipher: Cipher
) -> None:
    _queued(path, cipher, 300)
    store = MessageStore.open(path, KEY, cipher)
    reader = store.reader()
    try:
        roots = sqlite_pages.roots(path)
        sqlite_pages.garbage(path, sqlite_pages.leaves(path, roots["offline"]), seed=4)
        with pytest.raises(sqlite3.DatabaseError) as info:
            reader.offline("bob", 0, 1000, 1 << 20)
        assert is_damage(info.value)
    finally:
        reader.close()
        store.close()


# --- unread counts (a login's `markers`, v1.2 section 3) -----------------------------------------
def room_msg(msg_id: int, sender: str, room: str = "#dev") -> Kept:
    return Kept((Msg(msg_id, sender, room, f"m{msg_id}", T0 + msg_id),), (), ())


def _chatter(store: MessageStore, room: str, ids: range, mine: set[int]) -> None:
    """One chunk per message (one batch each, as a quiet room has): alice wrote `mine`."""
    for i in ids:
        keep(store, room_msg(i, "alice" if i in mine else "bob", room))


def _opened(store: MessageStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The chunks `store` opens from now on, as (first, last)."""
    calls: list[tuple[int, int]] = []
    real = MessageStore._open

    def spy(self: MessageStore, conv: bytes, first: int, last: int, ts: float, body: bytes):
        calls.append((first, last))
        return real(self, conv, first, last, ts, body)

    monkeypatch.setattr(MessageStore, "_open", spy)
    return calls


def test_room_and_everyone_unread_come_from_the_index_not_from_opening_chunks(
    store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = {5, 17, 40, 41}
    _chatter(store, "#dev", range(1, 61), mine)
    keep(store, *(public(100 + i, "alice" if i % 3 == 0 else "bob", "x") for i in range(9)))
    keep(store, room_msg(70, "bob"), room_msg(71, "alice"), room_msg(72, "bob"))  # one chunk
    opened = _opened(store, monkeypatch)
    # alice read up to 10: 11..60 and 70..72 are after it, 17, 40, 41 and 71 hers
    assert store.unread("alice", "#dev", 10, 1000) == (72, 53 - 4)
    assert opened == []  # every chunk after the marker counted from its `n`
    # the marker inside a chunk: that chunk alone is opened
    assert store.unread("alice", "#DEV", 70, 1000) == (72, 1)
    assert opened == [(70, 72)]
    assert store.unread("alice", "*", 0, 1000) == (108, 6)  # 100, 103, 106 are hers
    assert store.unread("bob", "#dev", 0, 1000) == (72, 5)  # alice's five
    assert store.unread("alice", "#dev", 72, 1000) == (72, 0)
    assert store.unread("alice", "#none", 0, 1000) == (0, 0)
    assert opened == [(70, 72)]  # nothing after the marker: nothing opened


def test_room_unread_stops_at_the_cap_and_never_counts_ones_own(
    store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = set(range(150, 200))  # the newest 50 are alice's own
    _chatter(store, "#dev", range(1, 200), mine)
    opened = _opened(store, monkeypatch)
    assert store.unread("alice", "#dev", 0, 100) == (199, 100)
    assert store.unread("alice", "#dev", 60, 100) == (199, 89)  # 61..149: below the cap
    assert store.unread("bob", "#dev", 0, 1000) == (199, 50)
    assert opened == []


def test_a_file_from_before_the_own_index_counts_its_old_messages_by_opening_them(
    path: Path, cipher: Cipher
) -> None:
    store = MessageStore.open(path, KEY, cipher)
    _chatter(store, "#dev", range(1, 21), {3, 4})
    with store.transaction():  # as an older server left it: no `own` rows, no `own_from`
        store._conn.execute("DELETE FROM own_runs")
        store._conn.execute("DELETE FROM meta WHERE k = 'own_from'")
    store.close()
    store = MessageStore.open(path, KEY, cipher)
    try:
        _chatter(store, "#dev", range(21, 31), {25})
        reader = store.reader()
        assert reader.unread("alice", "#dev", 0, 1000) == (30, 30 - 3)
        assert reader.unread("alice", "#dev", 22, 1000) == (30, 7)
        reader.close()
    finally:
        store.close()


def test_the_own_index_goes_with_its_room_and_with_retention(store: MessageStore) -> None:
    _chatter(store, "#dev", range(1, 11), {2, 3})
    _chatter(store, "#ops", range(11, 21), {12})
    store.drop_conversation("#dev")
    assert store.unread("alice", "#dev", 0, 1000) == (0, 0)
    assert store.purge_before(T0 + 15.5) == 5
    assert store.unread("alice", "#ops", 0, 1000) == (20, 5)
    rows = store._conn.execute("SELECT first, n FROM own_runs ORDER BY first").fetchall()
    assert rows == [(i, 1) for i in range(16, 21)]  # #dev's gone, 11..15 too old


def test_a_busy_batch_keeps_a_row_per_sender_and_chunk_not_per_message(
    store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy room's batch: 600 messages of three people in one transaction, split into
    three chunks (256 messages at most each): one `own_runs` row per sender per chunk, and
    the counts the same as a row per message gave, with the marker anywhere."""
    senders = ("alice", "bob", "carol")
    keep(store, *(room_msg(i, senders[i % 3]) for i in range(1, 601)))
    runs = store._conn.execute("SELECT first, n FROM own_runs ORDER BY first").fetchall()
    assert len(runs) == 3 * 3 and sum(n for _, n in runs) == 600
    opened = _opened(store, monkeypatch)
    for upto in (0, 1, 255, 256, 257, 300, 512, 513, 599, 600):
        after = range(upto + 1, 601)
        for who in senders:
            others = sum(1 for i in after if senders[i % 3] != who)
            opened.clear()
            assert store.unread(who, "#dev", upto, 1000) == (600, others), (who, upto)
            assert len(opened) <= 1  # the chunk the marker falls in, at most
    assert store.unread("alice", "#dev", 0, 100) == (600, 100)  # the cap


def test_a_file_with_a_row_per_own_message_is_moved_to_runs_once(
    path: Path, cipher: Cipher
) -> None:
    """A file of the server before `own_runs` (`own`: a row per message) opens with its
    rows moved over, runs of one, the old table gone, the counts unchanged."""
    store = MessageStore.open(path, KEY, cipher)
    _chatter(store, "#dev", range(1, 21), {3, 4, 15})
    with store.transaction():  # as that server left it
        rows = store._conn.execute("SELECT first, conv, owner FROM own_runs").fetchall()
        store._conn.execute("DROP TABLE own_runs")
        store._conn.execute(
            "CREATE TABLE own (id INTEGER PRIMARY KEY, conv BLOB NOT NULL, owner BLOB NOT NULL)"
        )
        store._conn.executemany("INSERT INTO own VALUES (?, ?, ?)", rows)
    store.close()
    store = MessageStore.open(path, KEY, cipher)
    try:
        tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
        assert "own" not in tables and "own_runs" in tables
        moved = store._conn.execute("SELECT first, n FROM own_runs ORDER BY first").fetchall()
        assert moved == [(i, 1) for i in range(1, 21)]
        assert store.unread("alice", "#dev", 0, 1000) == (20, 17)
        assert store.unread("bob", "#dev", 0, 1000) == (20, 3)
        assert store.unread("alice", "#dev", 10, 1000) == (20, 9)
    finally:
        store.close()


def _steps(store: MessageStore, user: str, room: str, upto: int) -> tuple[tuple[int, int], int]:
    """`unread`'s answer and the SQLite VM steps it took (a proxy for the rows walked)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 1)
    try:
        return store.unread(user, room, upto, 1000), steps
    finally:
        store._conn.set_progress_handler(None, 1)


def test_a_read_up_room_costs_the_same_whatever_its_history(store: MessageStore) -> None:
    _chatter(store, "#small", range(1, 21), set())
    _chatter(store, "#big", range(21, 821), set())
    small, small_steps = _steps(store, "alice", "#small", 20)
    big, big_steps = _steps(store, "alice", "#big", 820)
    assert small == (20, 0) and big == (820, 0)
    assert big_steps < 2 * small_steps  # not a walk of the 800 chunks before the marker
    behind, _ = _steps(store, "alice", "#big", 810)
    assert behind == (820, 10)


def test_room_unread_goes_past_a_window_of_ones_own_chunks(store: MessageStore) -> None:
    # 12 chunks of bob's, then 12 of alice's own: the first window of `cap` (5) chunks
    # holds only hers, so the count goes on to older windows until it has 5 of bob's.
    _chatter(store, "#dev", range(1, 25), set(range(13, 25)))
    assert store.unread("alice", "#dev", 0, 5) == (24, 5)
    assert store.unread("alice", "#dev", 9, 5) == (24, 3)
    assert store.unread("bob", "#dev", 20, 5) == (24, 4)


def test_room_unread_leaves_out_what_the_retention_hides(path: Path, cipher: Cipher) -> None:
    store = MessageStore.open(path, KEY, cipher, retention=1.0)
    try:
        now = time.time()
        for i in range(1, 11):  # 1..5 an hour old, 6..10 new
            msg = Msg(i, "bob", "#dev", f"m{i}", now - (3600 if i <= 5 else 0))
            keep(store, Kept((msg,), (), ()))
        assert store.unread("alice", "#dev", 0, 1000) == (10, 5)
        assert store.unread("alice", "#dev", 3, 1000) == (10, 5)
    finally:
        store.close()


def test_a_file_with_big_ids_opens_when_the_check_walks_the_read_paths(
    path: Path, cipher: Cipher
) -> None:
    # Ids from an id mark's floor (2**52 and up) summed over a few thousand chunks
    # overflowed SQLite's sum() in the fallback check: the server refused to start.
    store = MessageStore.open(path, KEY, cipher)
    base = 1 << 61
    for i in range(5):
        keep(store, room_msg(base + i, "bob"), public(base + 100 + i, "bob", "x"))
        keep(store, private(base + 200 + i, "bob", ("alice",), "q", ("alice",)))
    store.close()
    store = MessageStore.open(path, KEY, cipher, check_budget=0.0)
    try:
        assert store.unread("alice", "#dev", 0, 1000) == (base + 4, 5)
        assert len(store.offline("alice", 0, 100, 1 << 20).messages) == 5
    finally:
        store.close()
