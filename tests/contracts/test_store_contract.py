"""The store seam's contract, run against both backends under the same `StoreService`.

`alone`: the SQLite file of a server alone (`store.sqlite.MessageStore`, ids reserved
in the file). `cluster`: Redis (`cluster.messages.RedisMessageStore` with
`cluster.messages.RedisIds`) on a real redis-server. Each test asks the service only
what the core asks (store/seam.py `Store`); what differs between the backends (where
the bytes lie, how a record is moved by someone who can write the storage) is in the
`Storage` classes below, never in a test.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from chat.server.cluster import messages as cluster_messages
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.cluster.messages import RedisIds, RedisMessageStore
from chat.server.core.rooms import Room
from chat.server.crypto.cipher import Cipher
from chat.server.store import service as store_service
from chat.server.store.seam import ReadFailed, Store
from chat.server.store.service import OFFLINE_PAGE, StoreService
from chat.server.store.sqlite import Kept, MessageStore, Page
from chat.shared.messages import BROADCAST, Msg
from together import run_together

from .conftest import IMPLEMENTATIONS, KEY, AnyRedis, at_rest, wait_until

#: Names and texts that must never be found in clear at rest (distinctive enough that
#: random sealed bytes never hold them by chance).
NAMES = ("alice", "bob", "carol", "dave")


class Storage:
    """One backend's storage, outliving the services opened over it (a restart)."""

    #: Ids the service reserves at once (a test crosses several blocks).
    id_block: int

    def __init__(self) -> None:
        self._open: list[StoreService] = []

    def open(self, offline_max: int = 1000) -> StoreService:
        """A started service over this storage."""
        raise NotImplementedError

    def close(self, service: StoreService) -> None:
        """Stop the service and whatever it needs (its ids)."""
        service.stop()
        self._open.remove(service)

    def close_all(self) -> None:
        for service in list(self._open):
            self.close(service)

    def at_rest(self) -> list[bytes]:
        """Every byte the storage holds: keys, values, files."""
        raise NotImplementedError

    # Someone who can write the storage but has no key moves records around.
    def move_conversation(self, src: tuple[str, str], dst: tuple[str, str]) -> None:
        raise NotImplementedError

    def shift_ids(self, pair: tuple[str, str], by: int) -> None:
        raise NotImplementedError

    def move_queue(self, src: str, dst: str) -> None:
        raise NotImplementedError


class SqliteStorage(Storage):
    id_block = store_service.ID_BLOCK

    def __init__(self, path: Path, cipher: Cipher) -> None:
        super().__init__()
        self.path = path
        self._cipher = cipher

    def open(self, offline_max: int = 1000) -> StoreService:
        service = StoreService(MessageStore.open(self.path, KEY, self._cipher), offline_max)
        service.start()
        self._open.append(service)
        return service

    def at_rest(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.path.parent.iterdir()) if p.is_file()]

    def _edit(self, sql: str, args: tuple[object, ...]) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            assert conn.execute(sql, args).rowcount > 0, "nothing was tampered with"
        finally:
            conn.close()

    def _indexes(self) -> MessageStore:
        store = MessageStore.open(self.path, KEY, self._cipher)
        store.close()  # its blind indexes need no connection
        return store

    def move_conversation(self, src: tuple[str, str], dst: tuple[str, str]) -> None:
        ix = self._indexes()
        self._edit(
            "UPDATE chunks SET conv = ? WHERE conv = ?",
            (ix.conversation(*dst), ix.conversation(*src)),
        )

    def shift_ids(self, pair: tuple[str, str], by: int) -> None:
        conv = self._indexes().conversation(*pair)
        self._edit(
            "UPDATE chunks SET first = first + ?, last = last + ? WHERE conv = ?", (by, by, conv)
        )

    def move_queue(self, src: str, dst: str) -> None:
        ix = self._indexes()
        self._edit("UPDATE offline SET owner = ? WHERE owner = ?", (ix.owner(dst), ix.owner(src)))


class RedisStorage(Storage):
    id_block = cluster_messages.ID_BLOCK

    def __init__(self, redis: AnyRedis, box: Box) -> None:
        super().__init__()
        self._redis = redis
        self._box = box
        self._client = redis.client()
        self._ids: dict[int, RedisIds] = {}

    def open(self, offline_max: int = 1000) -> StoreService:
        link = Link(self._redis.url)  # a new node: its own connection
        ids = RedisIds(link)
        ids.start()
        service = StoreService(RedisMessageStore(link, self._box), offline_max, ids=ids)
        service.start()
        self._ids[id(service)] = ids
        self._open.append(service)
        return service

    def close(self, service: StoreService) -> None:
        super().close(service)
        self._ids.pop(id(service)).stop()

    def at_rest(self) -> list[bytes]:
        return at_rest(self._client)

    def _keys(self) -> RedisMessageStore:
        return RedisMessageStore(Link(self._redis.url), self._box)  # its key names only

    def _move(self, src: str, dst: str, by: int = 0) -> None:
        rows = self._client.zrange(src, 0, -1, withscores=True)
        assert rows, "nothing was tampered with"
        self._client.delete(src)
        self._client.zadd(dst, {member: score + by for member, score in rows})

    def move_conversation(self, src: tuple[str, str], dst: tuple[str, str]) -> None:
        k = self._keys()
        self._move(k.conversation(*src), k.conversation(*dst))

    def shift_ids(self, pair: tuple[str, str], by: int) -> None:
        key = self._keys().conversation(*pair)
        self._move(key, key, by)

    def move_queue(self, src: str, dst: str) -> None:
        k = self._keys()
        self._move(k.owner(src), k.owner(dst))


@pytest.fixture(params=IMPLEMENTATIONS)
def storage(request: pytest.FixtureRequest, tmp_path: Path, cipher: Cipher) -> Iterator[Storage]:
    if request.param == "alone":
        made: Storage = SqliteStorage(tmp_path / "data" / "history.db", cipher)
    else:
        redis_server: AnyRedis = request.getfixturevalue("redis_of")(request.param)
        made = RedisStorage(redis_server, Box(KEY, cipher))
    yield made
    made.close_all()


@pytest.fixture
def store(storage: Storage) -> StoreService:
    return storage.open()


# ---- what the core does with a store ---------------------------------------------------
def send(
    store: Store,
    sender: str,
    to: str | tuple[str, ...],
    text: str,
    queued: tuple[str, ...] = (),
    durable: bool = False,
) -> Msg:
    """One message handed over as the route does: `named` is every registered recipient
    but the sender (none for everyone), `queued` those without a session."""
    msg_id = store.ids.take(1)
    assert msg_id is not None
    msg = Msg(msg_id, sender, to, text, time.time())
    named = () if to == BROADCAST else tuple(n for n in to if n != sender)
    receipt = store.keep(Kept((msg,), named, queued), durable)
    if durable:
        assert receipt is not None and receipt.result(5) is True
    return msg


def read(ask: Callable[[Callable[[Page | ReadFailed | None], None]], None]) -> Page:
    """Ask a read and wait for its one answer, which must be a page."""
    answer: Future[Page | ReadFailed | None] = Future()
    ask(answer.set_result)
    page = answer.result(5)
    assert isinstance(page, Page), page
    return page


def page(store: Store, user: str, peer: str, before: int | None = None, limit: int = 50) -> Page:
    return read(lambda reply: store.read_page(user, peer, before, limit, reply))


def offline(store: Store, user: str, after: int = 0) -> Page:
    return read(lambda reply: store.read_offline(user, after, reply))


def texts(p: Page) -> list[str]:
    return [m.text for m in p.messages]


def settled(store: Store) -> None:
    """Wait until everything handed over is stored (the barrier the core uses)."""
    done = threading.Event()
    store.after(store.enqueued, done.set)
    assert done.wait(5)


# ---- keeping -------------------------------------------------------------------------------
def test_a_durable_keep_resolves_true_and_a_plain_one_gives_no_receipt(
    store: StoreService,
) -> None:
    msg_id = store.ids.take(1)
    assert msg_id is not None
    msg = Msg(msg_id, "alice", ("bob",), "kept for bob", time.time())
    assert store.keep(Kept((msg,), ("bob",), ()), durable=False) is None
    receipt = store.keep(Kept((msg,), ("bob",), ("bob",)), durable=True)
    assert receipt is not None and receipt.result(5) is True
    assert [m.id for m in offline(store, "bob").messages] == [msg.id]


# ---- history pages (protocol v1.1 section 4) ---------------------------------------------------
@pytest.fixture
def talk(store: StoreService) -> StoreService:
    send(store, "alice", BROADCAST, "all: hello")
    send(store, "alice", ("bob",), "alice to bob")
    send(store, "alice", ("bob", "carol"), "alice to bob and carol")
    send(store, "carol", ("bob",), "carol to bob")
    send(store, "bob", ("alice",), "bob to alice")
    send(store, "carol", BROADCAST, "all: bye")
    return store


def test_star_gives_the_messages_to_everyone_and_only_those(talk: StoreService) -> None:
    for user in NAMES:
        got = page(talk, user, BROADCAST)
        assert texts(got) == ["all: hello", "all: bye"] and not got.more
        assert all(m.to == BROADCAST for m in got.messages)


def test_a_pair_gives_both_directions_and_the_group_messages_naming_both(
    talk: StoreService,
) -> None:
    expected = ["alice to bob", "alice to bob and carol", "bob to alice"]
    assert texts(page(talk, "alice", "bob")) == expected
    assert texts(page(talk, "bob", "alice")) == expected
    # The group message is in each pair its sender made with a member...
    assert texts(page(talk, "carol", "alice")) == ["alice to bob and carol"]
    # ...and not between two members of it: bob did not send it, carol did not either.
    assert texts(page(talk, "carol", "bob")) == ["carol to bob"]
    assert texts(page(talk, "bob", "carol")) == ["carol to bob"]
    group = page(talk, "alice", "carol").messages[0]
    assert (group.sender, group.to) == ("alice", ("bob", "carol"))


def test_a_user_never_sees_a_conversation_they_are_not_in(talk: StoreService) -> None:
    for peer in ("alice", "bob", "carol"):
        assert texts(page(talk, "dave", peer)) == []
    assert texts(page(talk, "alice", "alice")) == []
    assert texts(page(talk, "alice", "nobody")) == []


def test_pages_go_back_with_before_oldest_first_and_say_when_more_exist(
    store: StoreService,
) -> None:
    sent = [send(store, "alice", BROADCAST, f"m{i}") for i in range(1, 11)]
    newest = page(store, "bob", BROADCAST, limit=4)
    assert texts(newest) == ["m7", "m8", "m9", "m10"] and newest.more
    older = page(store, "bob", BROADCAST, newest.messages[0].id, 4)
    assert texts(older) == ["m3", "m4", "m5", "m6"] and older.more
    oldest = page(store, "bob", BROADCAST, older.messages[0].id, 4)
    assert texts(oldest) == ["m1", "m2"] and not oldest.more
    first = page(store, "bob", BROADCAST, sent[0].id, 4)
    assert texts(first) == [] and not first.more
    exact = page(store, "bob", BROADCAST, sent[4].id, 4)
    assert texts(exact) == ["m1", "m2", "m3", "m4"] and not exact.more
    assert [m.id for m in page(store, "bob", BROADCAST).messages] == [m.id for m in sent]
    one = page(store, "bob", BROADCAST, limit=1)
    assert texts(one) == ["m10"] and one.more
    pair = [send(store, "bob", ("alice",), f"p{i}") for i in range(3)]
    back = page(store, "alice", "bob", pair[2].id, 1)
    assert texts(back) == ["p1"] and back.more


def test_a_page_shows_each_message_as_it_was_sent(store: StoreService) -> None:
    sent = send(store, "alice", ("bob", "carol"), 'exact: é ✓ \u2028 "quoted"')
    (got,) = page(store, "bob", "alice").messages
    assert (got.id, got.sender, got.to, got.text) == (sent.id, sent.sender, sent.to, sent.text)
    assert got.ts == pytest.approx(sent.ts, abs=1e-6) and not got.offline


# ---- offline queues (protocol v1.1 section 3) ----------------------------------------------------
def test_queued_names_get_the_messages_oldest_first_and_nobody_else(store: StoreService) -> None:
    first = send(store, "alice", ("bob", "carol"), "to both", queued=("bob", "carol"), durable=True)
    second = send(store, "alice", ("bob", "carol"), "bob only", queued=("bob",), durable=True)
    send(store, "alice", BROADCAST, "to everyone")  # "*" queues nothing
    send(store, "carol", ("alice",), "alice is online")  # delivered: not queued
    bob = offline(store, "bob")
    assert [(m.id, m.text) for m in bob.messages] == [
        (first.id, "to both"),
        (second.id, "bob only"),
    ]
    assert all(m.offline for m in bob.messages) and not bob.more
    assert bob.last == second.id
    assert texts(offline(store, "carol")) == ["to both"]
    assert texts(offline(store, "alice")) == []
    assert texts(offline(store, "dave")) == []
    assert texts(page(store, "bob", "alice")) == ["to both", "bob only"]


def test_read_offline_pages_after_an_id(store: StoreService) -> None:
    total = OFFLINE_PAGE + 50
    sent = [send(store, "alice", ("bob",), f"q{i}", queued=("bob",)) for i in range(total)]
    head = offline(store, "bob")
    assert [m.id for m in head.messages] == [m.id for m in sent[:OFFLINE_PAGE]] and head.more
    assert head.last == sent[OFFLINE_PAGE - 1].id
    tail = offline(store, "bob", head.last)
    assert [m.id for m in tail.messages] == [m.id for m in sent[OFFLINE_PAGE:]] and not tail.more
    assert tail.last == sent[-1].id
    assert offline(store, "bob", sent[-1].id).messages == ()
    middle = offline(store, "bob", sent[9].id)
    assert middle.messages[0].id == sent[10].id


def test_ack_removes_up_to_upto_and_an_ack_of_nothing_is_fine(store: StoreService) -> None:
    sent = [send(store, "alice", ("bob",), f"q{i}", queued=("bob",)) for i in range(5)]
    store.ack("bob", sent[1].id)
    assert texts(offline(store, "bob")) == ["q2", "q3", "q4"]
    for user, upto in (("bob", sent[1].id), ("bob", 0), ("carol", sent[-1].id), ("nobody", 2**62)):
        store.ack(user, upto)  # nothing to remove: not an error, nothing else goes
    assert texts(offline(store, "bob")) == ["q2", "q3", "q4"]
    done = threading.Event()
    store.after(store.ack("bob", sent[-1].id), done.set)
    assert done.wait(5)
    assert texts(offline(store, "bob")) == []
    assert texts(page(store, "bob", "alice")) == [f"q{i}" for i in range(5)]  # history stays


def test_the_quota_drops_the_oldest_and_says_so(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    store = storage.open(offline_max=5)
    with caplog.at_level(logging.WARNING):
        for i in range(8):
            send(store, "alice", ("bob",), f"q{i}", queued=("bob",))
            settled(store)  # one batch each: the quota holds at every write
    assert texts(offline(store, "bob")) == [f"q{i}" for i in range(3, 8)]
    assert any("--offline-max 5" in r.getMessage() for r in caplog.records)
    send(store, "alice", ("bob", "carol"), "carol's first", queued=("bob", "carol"))
    assert texts(offline(store, "carol")) == ["carol's first"]  # one queue's quota only


# ---- the barrier: a read sees everything handed over before it -----------------------------------
def test_a_read_sees_everything_handed_over_before_it(store: StoreService) -> None:
    for round_ in range(3):
        sent = [
            send(store, "alice", ("bob",), f"r{round_}-{i}", queued=("bob",)) for i in range(60)
        ]
        # No receipt, no wait: the read itself must wait for the writer.
        assert page(store, "bob", "alice", limit=200).messages[-1].id == sent[-1].id
        assert offline(store, "bob").messages[-1].id == sent[-1].id
        done = threading.Event()
        store.after(store.ack("bob", sent[-1].id), done.set)
        assert texts(offline(store, "bob")) == []  # the ack, handed over before, is seen too
        assert done.wait(5)


# ---- ids (protocol v1.1 section 2) ---------------------------------------------------------------
def test_ids_are_unique_and_rise_for_every_taker(store: StoreService) -> None:
    takers, each = 4, 5000
    got: list[list[int | None]] = [[] for _ in range(takers)]

    def take(out: list[int | None]) -> None:
        for _ in range(each):
            out.append(store.ids.take(1))

    run_together(take, [(out,) for out in got])
    for out in got:
        assert None not in out
        assert out == sorted(out) and len(set(out)) == each
    everything = [i for out in got for i in out]
    assert len(set(everything)) == takers * each
    runs = [store.ids.take(n) for n in (1, 7, 300, 1)]
    assert None not in runs
    assert runs[0] > max(everything)  # type: ignore[operator]
    assert runs[1] == runs[0] + 1 and runs[2] == runs[1] + 7 and runs[3] == runs[2] + 300  # type: ignore[operator]


def test_ids_go_on_across_blocks_without_a_gap_in_time(storage: Storage) -> None:
    store = storage.open()
    step = storage.id_block // 8
    last = 0
    for _ in range(3 * 8):  # three blocks, taken at a pace the backend follows
        first = store.ids.take(step)
        assert first is not None, "an id was refused in normal operation"
        assert first > last
        last = first + step - 1
        # The backend's pace, not a fixed one: under four test workers an fsync'd ceiling
        # once took longer than four 10 ms steps (the product has half a block, 500,000
        # messages, of margin, not 40 ms).
        assert wait_until(lambda: store.ids.ahead, 10.0), "the next block of ids never came"
    assert store.ids.peek() == last + 1


# ---- at rest -------------------------------------------------------------------------------------
SECRETS = ("alice", "bob", "carol", "secret-at-rest", "top secret: the plan", "private words")


def test_nothing_is_in_clear_at_rest(storage: Storage) -> None:
    store = storage.open()
    send(store, "alice", BROADCAST, "top secret: the plan")
    send(store, "alice", ("bob",), "secret-at-rest", queued=("bob",), durable=True)
    send(store, "bob", ("alice", "carol"), "private words", queued=("carol",), durable=True)
    settled(store)
    for phase in ("running", "stopped"):
        blobs = storage.at_rest()
        assert sum(len(b) for b in blobs) > 200, "the storage holds nothing: nothing was checked"
        for blob in blobs:
            for word in SECRETS:
                assert word.encode() not in blob, f"{word!r} in clear at rest ({phase})"
        if phase == "running":
            storage.close(store)
    again = storage.open()
    assert texts(page(again, "carol", "bob")) == ["private words"]  # what was scanned is it


# ---- tampering: a record moved to another key or id does not open --------------------------------
@pytest.fixture
def tampered(storage: Storage) -> Iterator[tuple[Storage, list[Msg]]]:
    store = storage.open()
    sent = [
        send(store, "alice", ("bob",), "alice to bob", queued=("bob",), durable=True),
        send(store, "carol", ("dave",), "carol to dave", durable=True),
        send(store, "alice", ("carol",), "alice to carol", durable=True),
    ]
    storage.close(store)  # tampered with between two runs: the restart reads it again
    yield storage, sent


def test_a_conversation_moved_to_another_pair_is_reported_and_left_out(
    tampered: tuple[Storage, list[Msg]], caplog: pytest.LogCaptureFixture
) -> None:
    storage, _ = tampered
    storage.move_conversation(("alice", "bob"), ("carol", "dave"))
    store = storage.open()
    with caplog.at_level(logging.ERROR):
        assert texts(page(store, "carol", "dave")) == ["carol to dave"]
        assert texts(page(store, "dave", "carol")) == ["carol to dave"]
        assert texts(page(store, "alice", "bob")) == []
    assert caplog.records, "the damage was not reported"
    assert texts(page(store, "alice", "carol")) == ["alice to carol"]  # the rest reads on


def test_a_message_moved_to_another_id_is_reported_and_left_out(
    tampered: tuple[Storage, list[Msg]], caplog: pytest.LogCaptureFixture
) -> None:
    storage, _ = tampered
    storage.shift_ids(("alice", "bob"), 1000)
    store = storage.open()
    with caplog.at_level(logging.ERROR):
        assert texts(page(store, "bob", "alice")) == []
    assert caplog.records, "the damage was not reported"
    assert texts(page(store, "carol", "dave")) == ["carol to dave"]


def test_an_offline_entry_moved_to_another_queue_is_left_out(
    tampered: tuple[Storage, list[Msg]], caplog: pytest.LogCaptureFixture
) -> None:
    storage, _ = tampered
    storage.move_queue("bob", "dave")
    store = storage.open()
    with caplog.at_level(logging.ERROR):
        dave = offline(store, "dave")
        assert texts(dave) == []
    assert caplog.records, "the damage was not reported"
    assert texts(offline(store, "bob")) == []


# ---- restart -------------------------------------------------------------------------------------
def test_a_new_service_over_the_same_storage_has_everything(storage: Storage) -> None:
    store = storage.open()
    everyone = send(store, "alice", BROADCAST, "before the restart")
    durable = send(store, "alice", ("bob",), "queued for bob", queued=("bob",), durable=True)
    plain = send(store, "bob", ("alice",), "handed over, no receipt")  # stored by stop()
    for i in range(3):
        send(store, "carol", ("bob",), f"c{i}", queued=("bob",))
    store.ack("bob", durable.id)  # handed over last: stop() stores it too
    before = store.ids.take(1)
    storage.close(store)

    again = storage.open()
    assert texts(page(again, "dave", BROADCAST)) == [everyone.text]
    assert [m.id for m in page(again, "alice", "bob").messages] == [durable.id, plain.id]
    assert texts(offline(again, "bob")) == ["c0", "c1", "c2"]
    after = again.ids.take(1)
    assert before is not None and after is not None and after > before
    assert send(again, "alice", ("bob",), "after the restart").id > after


# ---- v1.2: rooms, read markers, contacts, unread counts ------------------------------------------
def a_room(name: str = "#Dev", last: int = 0) -> Room:
    room = Room(name, "the build", True, "carol", 1_700_000_000.5)
    room.members = dict.fromkeys(["carol", "alice", "bob"])  # the order they joined
    room.invites = {"dave": "carol"}
    room.last = last
    return room


def markers(store: StoreService, user: str, rooms: list[str] | None = None) -> list[tuple]:
    """A login's `markers` rows: (peer, upto, last, unread), newest first."""
    return list(read(lambda reply: store.read_markers(user, rooms or [], reply)).messages)


def test_a_room_kept_is_loaded_whole_by_the_next_service(storage: Storage) -> None:
    store = storage.open()
    store.save_room("#dev", a_room(), "#Dev")
    gone = a_room("#Gone")
    store.save_room("#gone", gone, "#Gone")
    store.save_room("#gone", None, "#Gone")  # deleted: not loaded again
    settled(store)
    storage.close(store)
    again = storage.open()
    (room,) = again.load_rooms()
    expected = a_room()
    assert (room.name, room.topic, room.invite_only, room.owner, room.created) == (
        expected.name,
        expected.topic,
        expected.invite_only,
        expected.owner,
        expected.created,
    )
    assert list(room.members) == ["carol", "alice", "bob"] and room.invites == {"dave": "carol"}


def test_a_rooms_messages_are_its_conversation_and_go_with_it(store: StoreService) -> None:
    store.save_room("#dev", a_room(), "#Dev")
    first = send(store, "alice", "#Dev", "in the room")
    send(store, "bob", "#dev", "another case, the same room")
    send(store, "alice", BROADCAST, "to everyone")
    got = page(store, "carol", "#DEV")
    assert texts(got) == ["in the room", "another case, the same room"]
    assert got.messages[0].to == "#Dev" and got.messages[0].id == first.id  # as written
    assert texts(page(store, "carol", BROADCAST)) == ["to everyone"]
    assert texts(offline(store, "carol")) == []  # a room queues nothing
    store.save_room("#dev", None, "#Dev")  # the last member left: history goes too
    assert texts(page(store, "carol", "#dev")) == []


def test_markers_list_every_conversation_with_its_last_id_and_unread_count(
    store: StoreService,
) -> None:
    all1 = send(store, "bob", BROADCAST, "b1")
    send(store, "alice", BROADCAST, "a1")  # her own: never unread
    all3 = send(store, "bob", BROADCAST, "b2")
    pair1 = send(store, "bob", ("alice",), "p1")
    pair2 = send(store, "bob", ("alice",), "p2")
    send(store, "carol", "#dev", "r1")
    room2 = send(store, "carol", "#dev", "r2")
    store.set_marker("alice", BROADCAST, all1.id)
    store.set_marker("alice", "#dev", room2.id)
    rows = {r[0]: r[1:] for r in markers(store, "alice", ["#dev"])}
    assert rows["*"] == (all1.id, all3.id, 1)
    assert rows["bob"] == (0, pair2.id, 2)  # a contact: listed without a marker
    assert rows["#dev"] == (room2.id, room2.id, 0)
    assert pair1.id < pair2.id
    order = [r[0] for r in markers(store, "alice", ["#dev"])]
    assert order == sorted(order, key=lambda p: rows[p][1], reverse=True)  # newest first
    bob = {r[0]: r[1:] for r in markers(store, "bob")}
    assert bob["alice"] == (0, pair2.id, 0)  # his own messages are not unread to him
    assert "#dev" not in bob  # not one of his rooms, no marker


def test_unread_counts_stop_at_the_cap(
    store: StoreService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_service, "UNREAD_CAP", 5)
    sent = [send(store, "bob", ("alice",), f"u{i}") for i in range(12)]
    rows = {r[0]: r[1:] for r in markers(store, "alice")}
    assert rows == {"bob": (0, sent[-1].id, 5)}
    store.set_marker("alice", "bob", sent[8].id)
    assert {r[0]: r[1:] for r in markers(store, "alice")} == {"bob": (sent[8].id, sent[-1].id, 3)}


def test_a_deleted_users_queue_markers_and_contacts_go(store: StoreService) -> None:
    send(store, "bob", ("alice",), "queued", queued=("alice",))
    store.set_marker("alice", BROADCAST, 7)
    assert markers(store, "alice")
    done = threading.Event()
    store.after(store.drop_user("alice"), done.set)
    assert done.wait(5)
    assert texts(offline(store, "alice")) == []
    rows = {r[0]: r[1:] for r in markers(store, "alice")}
    assert "*" not in rows and rows.get("bob", (0,))[0] == 0  # no marker left
    assert texts(page(store, "bob", "alice")) == ["queued"]  # history stays


def test_a_new_account_of_a_deleted_name_never_reads_the_old_ones_private_history(
    store: StoreService,
) -> None:
    send(store, "bob", ("alice",), "to the old alice", queued=("alice",))
    send(store, "alice", ("bob",), "from the old alice")
    send(store, "alice", BROADCAST, "to everyone")
    done = threading.Event()
    store.after(store.drop_user("alice"), done.set)
    assert done.wait(5)
    assert texts(page(store, "alice", "bob")) == []  # the newcomer's side: nothing old
    assert texts(page(store, "alice", BROADCAST)) == ["to everyone"]  # public stays public
    assert {r[0]: r[1:] for r in markers(store, "alice")}.get("bob", (0, 0, 0))[2] == 0
    fresh = send(store, "bob", ("alice",), "to the new alice")
    assert texts(page(store, "alice", "bob")) == ["to the new alice"]
    rows = {r[0]: r[1:] for r in markers(store, "alice")}
    assert rows.get("bob") == (0, fresh.id, 1), rows  # unread: the new one only
    everything = ["to the old alice", "from the old alice", "to the new alice"]
    assert texts(page(store, "bob", "alice")) == everything  # bob keeps all


ROOM_SECRETS = ("#hush-room", "topic-in-the-clear", "marcello", "ludovica")


def test_rooms_markers_and_contacts_are_not_in_clear_at_rest(storage: Storage) -> None:
    store = storage.open()
    room = Room("#hush-room", "topic-in-the-clear", False, "marcello", time.time())
    room.members = dict.fromkeys(["marcello", "ludovica"])
    store.save_room("#hush-room", room, "#hush-room")
    msg = send(store, "ludovica", ("marcello",), "x")
    send(store, "ludovica", "#hush-room", "y")
    store.set_marker("marcello", "#hush-room", msg.id)
    store.set_marker("marcello", "ludovica", msg.id)
    settled(store)
    blobs = storage.at_rest()
    for blob in blobs:
        for word in ROOM_SECRETS:
            assert word.encode() not in blob, f"{word!r} in clear at rest"
    assert [r[0] for r in markers(store, "marcello", ["#hush-room"])].count("ludovica") == 1
