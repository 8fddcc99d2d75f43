"""No thread of the server dies or wedges silently (issue "1 of 6").

A store writer, a reader, a hash thread or a worker that meets an unexpected
exception logs it once with the traceback, answers what it was doing with an
error, and keeps serving; a held mailbox is never left held. Each failure is
injected once into the real part (the harness's core, store and accounts),
and the next operation shows the thread still serves. The cluster's publisher
and subscribers: tests/cluster/test_thread_failures_cluster.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from chat.server.accounts.hashing import HashExecutor
from chat.server.app import Engines
from chat.server.core.pool import Mailbox, WorkerPool
from chat.server.core.results import HistoryRead
from chat.server.core.user import User
from chat.server.crypto.cipher import load_cipher
from chat.server.net.inbox import Cause, CloseAfterFlush
from chat.server.store.service import StoreService
from chat.server.store.sqlite import Kept, MessageStore
from chat.shared.errors import Trouble, Why
from chat.shared.messages import (
    Auth,
    AuthOk,
    ClientBye,
    ClientMessage,
    Error,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Ping,
    Pong,
    Roster,
    RosterAck,
    Send,
    Sent,
    ServerBye,
    ServerMessage,
    encode,
)

from .harness import KEY, Faults, FaultyAccounts, FaultyStore, World


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def world(tmp_path: Path, faults: Faults) -> Iterator[World]:
    w = World(
        tmp_path,
        backend=lambda store: FaultyStore(store, faults),
        engines=lambda w: Engines(FaultyAccounts(w.store, faults), w.keeper),
    )
    yield w
    w.close()


def the_traceback(
    caplog: pytest.LogCaptureFixture, kind: type[BaseException], words: str
) -> logging.LogRecord:
    """The one record with a traceback: of `kind`, saying `words` (what failed)."""
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    (record,) = tracebacks
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is kind
    assert words in record.getMessage(), record.getMessage()
    return record


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def register(world: World, *names: str) -> None:
    """Accounts that exist but are offline."""
    for name in names:
        world.post(world.login(name), ClientBye())


def log_in(world: World, name: str, *after: ClientMessage) -> tuple[User, list[ServerMessage]]:
    """Log in; what came after the roster ack (the catch-up) and the frames in `after`."""
    session = world.connect()
    world.post(session, Auth(name, "pw", False))
    roster = world.frames(session)[1]
    assert isinstance(roster, Roster)
    world.post(session, RosterAck(roster.seq), *after)
    return session, world.frames(session)


def texts(frames: list[ServerMessage]) -> list[str]:
    return [f.text for f in frames if isinstance(f, Msg)]


def post_now(world: World, session: User, *items: ClientMessage) -> None:
    """Post frames and run what is queued, without waiting for the mailbox to settle (a
    stalled store holds it)."""
    payloads = [encode(i)[4:] for i in items]
    session.mailbox.post(payloads, sum(map(len, payloads)))
    world.pool.run()


# ---- (a) the store's writer -------------------------------------------------------------------
def test_a_batch_the_writer_cannot_store_answers_its_sent_and_the_next_one_is_stored(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    register(world, "bob")
    alice = world.login("alice")
    faults.once("put", RuntimeError("injected: the writer's put"))
    world.post(alice, Send(1, ("bob",), "lost"), Ping())
    # The `sent` that waited for durability comes, queued for nobody, and in its order.
    assert world.frames(alice) == [Sent(1, (), ("bob",), (), msg_id=ANY), Pong()]
    the_traceback(caplog, RuntimeError, "not stored")
    assert len(errors(caplog)) == 1
    world.post(alice, Send(2, ("bob",), "kept"))
    assert world.frames(alice) == [Sent(2, (), ("bob",), ("bob",), msg_id=ANY)]
    _, frames = log_in(world, "bob")
    assert texts(frames) == ["kept"]


def test_an_ack_the_writer_cannot_store_still_lets_the_bye_go_and_the_next_ack_works(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    register(world, "bob")
    alice = world.login("alice")
    for i in range(2):
        world.post(alice, Send(i, ("bob",), f"m{i}"))
    bob, frames = log_in(world, "bob")
    last = [f for f in frames if isinstance(f, Msg)][-1].id
    faults.once("ack", OverflowError("injected: the writer's ack"))
    world.post(bob, OfflineAck(last), ClientBye())
    # The bye waited for the ack to be done (stored or failed): it is not left waiting.
    assert world.frames(bob) == [ServerBye(Why.BYE)] and not bob.mailbox.held
    the_traceback(caplog, OverflowError, "not stored")
    # Not stored: the messages come again (at least once), and this time the ack holds.
    bob, frames = log_in(world, "bob")
    assert texts(frames) == ["m0", "m1"]
    world.post(bob, OfflineAck(last), ClientBye())
    assert world.frames(bob) == [ServerBye(Why.BYE)]
    _, frames = log_in(world, "bob")
    assert texts(frames) == []


def test_an_unexpected_error_in_the_writers_own_work_is_logged_and_it_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a batch (taking the next one): the writer's loop logs it and takes again."""
    keeper = StoreService(MessageStore.open(tmp_path / "h.db", KEY, load_cipher()), 1000)
    real = keeper._take
    calls: list[int] = []

    def take() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the writer's take")
        return real()

    monkeypatch.setattr(keeper, "_take", take)
    keeper.start()  # its first take raises
    try:
        first = keeper.ids.take(1)
        assert first is not None
        m = Msg(first, "alice", ("bob",), "kept", time.time())
        receipt = keeper.keep(Kept((m,), ("bob",), ("bob",)), durable=True)
        assert receipt is not None and receipt.result(5) is True
        the_traceback(caplog, RuntimeError, "writer met an unexpected error")
        pages: list[Any] = []
        done = threading.Event()
        keeper.read_offline("bob", 0, lambda page: (pages.append(page), done.set()))
        assert done.wait(5) and [m.text for m in pages[0].messages] == ["kept"]
    finally:
        keeper.stop()


# ---- (b) the store's readers ----------------------------------------------------------------
def test_a_history_read_that_fails_is_an_error_with_its_id_and_the_next_read_works(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    alice = world.login("alice")
    world.post(alice, Send(1, "*", "hello"))
    world.frames(alice)
    faults.once("page", RuntimeError("injected: a reader's page"))
    world.post(alice, HistoryRequest("h1", "*"), Ping())
    error, pong = world.frames(alice)
    assert isinstance(error, Error) and error.id == "h1"
    assert error.message == Trouble.HISTORY_UNREADABLE and pong == Pong()
    the_traceback(caplog, RuntimeError, "reading the history of alice with * failed")
    world.post(alice, HistoryRequest("h2", "*"))
    (page,) = world.frames(alice)
    assert isinstance(page, HistoryPage) and page.id == "h2"
    assert [m.text for m in page.messages] == ["hello"]


def test_a_catch_up_that_cannot_be_read_is_an_error_and_leaves_nothing_held(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    register(world, "bob")
    alice = world.login("alice")
    world.post(alice, Send(1, ("bob",), "for later"))
    faults.once("offline", RuntimeError("injected: a reader's offline"))
    bob, frames = log_in(world, "bob", Ping())
    (error, pong) = frames
    assert isinstance(error, Error) and error.message == Trouble.OFFLINE_UNREADABLE
    assert pong == Pong()
    assert not bob.mailbox.held
    the_traceback(caplog, RuntimeError, "reading the offline queue of bob failed")
    # Live messages flow (nothing left held aside), and the stored one waits for the next login.
    world.post(alice, Send(2, ("bob",), "live"))
    assert texts(world.frames(bob)) == ["live"]
    world.post(bob, ClientBye())
    _, frames = log_in(world, "bob")
    assert texts(frames) == ["for later"]


# ---- (c) the hash threads -------------------------------------------------------------------
def test_a_password_check_that_fails_says_bye_and_the_next_login_works(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    register(world, "alice")
    first = world.connect()
    faults.once("verify", RuntimeError("injected: verify"))
    world.post(first, Auth("alice", "pw", False), Ping())
    assert world.frames(first) == [ServerBye(Why.CHECK_FAILED)]
    assert first.conn.closed and not first.mailbox.held
    assert CloseAfterFlush(first.cid, "accounts store failed", Cause.US) in world.requests
    the_traceback(caplog, RuntimeError, "checking the login of alice")
    second = world.connect()
    world.post(second, Auth("alice", "pw", False))
    assert [type(f) for f in world.frames(second)] == [AuthOk, Roster]


def test_a_registration_that_fails_says_bye_and_the_next_one_works(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    first = world.connect()
    faults.once("register", RuntimeError("injected: register"))
    world.post(first, Auth("alice", "pw", True))
    assert world.frames(first) == [ServerBye(Why.STORE_FAILED)] and first.conn.closed
    the_traceback(caplog, RuntimeError, "checking the login of alice")
    second = world.connect()
    world.post(second, Auth("alice", "pw", True))
    assert [type(f) for f in world.frames(second)] == [AuthOk, Roster]


def test_a_hash_job_that_raises_leaves_the_hash_thread_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hasher = HashExecutor(1, 8)
    hasher.start()
    try:
        ran = threading.Event()

        def boom() -> None:
            raise RuntimeError("injected: a hash job")

        assert hasher.submit(boom) and hasher.submit(ran.set)
        assert ran.wait(5)  # the one thread went on
        the_traceback(caplog, RuntimeError, "hash job failed")
    finally:
        hasher.stop()


# ---- (d) the workers ------------------------------------------------------------------------
def raise_once(target: Any, name: str, when: Callable[[Any], bool]) -> list[Any]:
    """Make `target.name` (an instance's method) raise once, for the first item `when`
    picks; the items it raised for."""
    real = getattr(target, name)
    raised: list[Any] = []

    def wrapper(user: User, item: Any, tick: Any) -> Any:
        if not raised and when(item):
            raised.append(item)
            raise RuntimeError(f"injected: {name} of {item!r}")
        return real(user, item, tick)

    setattr(target, name, wrapper)
    return raised


def test_a_frame_whose_handler_raises_is_logged_and_the_next_frame_is_answered(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    alice = world.login("alice")
    frames = world.core.dispatcher._frames
    raised = raise_once(frames, "handle", lambda item: isinstance(item, Ping))
    world.post(alice, Ping())
    assert raised == [Ping()] and world.frames(alice) == []
    the_traceback(caplog, RuntimeError, "handling Ping for")
    assert not alice.mailbox.held
    world.post(alice, Ping())
    assert world.frames(alice) == [Pong()]


def test_a_result_whose_handler_raises_leaves_the_mailbox_serving(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The mailbox held for a read; the read's result raised: it is not left held."""
    alice = world.login("alice")
    results = world.core.dispatcher._outcomes
    raised = raise_once(results, "handle", lambda item: isinstance(item, HistoryRead))
    world.post(alice, HistoryRequest("h1", "*"))
    assert len(raised) == 1 and not alice.mailbox.held
    the_traceback(caplog, RuntimeError, "handling HistoryRead for")
    # What it was doing is answered: an error with the request's id.
    assert world.frames(alice) == [Error("rate_limited", Trouble.INTERNAL, "h1")]
    world.post(alice, Ping(), HistoryRequest("h2", "*"))
    assert world.frames(alice) == [Pong(), HistoryPage("h2", (), False)]


def test_frames_behind_a_frame_whose_handler_raised_are_answered(world: World) -> None:
    alice = world.login("alice")
    raise_once(world.core.dispatcher._frames, "handle", lambda item: isinstance(item, Ping))
    world.post(alice, Ping(), Ping(), Send(1, "*", "x"))
    frames = world.frames(alice)
    assert frames[-2:] == [Pong(), Sent(1, (), (), (), msg_id=ANY)], frames


def test_a_send_whose_handling_raises_is_answered_with_an_error_carrying_its_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = world.login("alice")
    fanout = world.core.fanout
    real = fanout.send
    calls: list[int] = []

    def send(user: User, sends: list[Send], tick: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the fan-out")
        return real(user, sends, tick)

    monkeypatch.setattr(fanout, "send", send)
    world.post(alice, Send(7, "*", "x"))
    (frame,) = world.frames(alice)
    assert isinstance(frame, Error) and frame.id == 7
    world.post(alice, Send(8, "*", "y"))
    assert world.frames(alice) == [Sent(8, (), (), (), msg_id=ANY)]


def test_a_worker_task_that_raises_leaves_the_worker_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real pool, one thread: a mailbox whose handler raises, then another's work."""
    pool = WorkerPool(1, lambda: None)
    pool.start()
    try:
        seen: list[Any] = []
        done = threading.Event()

        def handler(items: list[Any]) -> int | None:
            if b"boom" in items:
                raise RuntimeError("injected: a handler")
            seen.extend(items)
            done.set()
            return None

        box = Mailbox(pool, handler)
        box.post([b"boom"], 4)
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        box.post([b"next"], 4)
        assert done.wait(5) and seen == [b"next"] and not box.held and box.size == 0
        the_traceback(caplog, RuntimeError, "mailbox handler failed")
        # And a bare task that raises (no mailbox): the worker goes on.
        ran = threading.Event()

        def boom() -> None:
            raise RuntimeError("injected: a task")

        pool.submit(boom)
        pool.submit(ran.set)
        assert ran.wait(5)
        assert sum(1 for r in caplog.records if r.exc_info) == 2
    finally:
        pool.stop()


def test_a_worker_whose_end_of_tick_raises_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def end_tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the end of a tick")

    pool = WorkerPool(1, end_tick)
    pool.start()
    try:
        first, second = threading.Event(), threading.Event()
        pool.submit(first.set)
        assert first.wait(5)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.submit(second.set)
        assert second.wait(5)
        the_traceback(caplog, RuntimeError, "end of tick failed")
    finally:
        pool.stop()


# ---- bad input reaches no thread ----------------------------------------------------------
def test_an_offline_ack_out_of_range_costs_no_other_message_and_no_traceback(
    world: World, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    register(world, "dave", "erin")
    alice, bob, carol = world.login("alice"), world.login("bob"), world.login("carol")
    for s in (alice, bob, carol):
        world.frames(s)
    stall = threading.Event()
    faults.once("put", stall)  # the disk stalls: what follows goes into one batch
    post_now(world, carol, Send(1, ("erin",), "first"))
    post_now(world, bob, OfflineAck(-(2**63) - 1))
    post_now(world, alice, Send(2, ("dave",), "for dave"))
    stall.set()
    world.settle()
    assert [f for f in world.frames(alice) if isinstance(f, Sent)] == [
        Sent(2, (), ("dave",), ("dave",), msg_id=ANY)
    ]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_history_before_out_of_range_is_answered_without_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    alice = world.login("alice")
    world.post(alice, HistoryRequest("h", "*", -(2**63) - 1))
    (reply,) = world.frames(alice)
    assert reply.id == "h"  # type: ignore[union-attr]
    assert not isinstance(reply, Error) or reply.code == "bad_request"
    assert not [r for r in caplog.records if r.exc_info]
