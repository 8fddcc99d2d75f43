"""core/lookups.py: one owned thread, asks run in order, a bounded queue, a bug costs one ask."""

from __future__ import annotations

import threading

from chat.server.core.lookups import Lookups


def test_asks_run_in_the_order_given_on_the_thread_and_stop_joins_it() -> None:
    lookups = Lookups(name="lookups-test")
    ran: list[tuple[int, str]] = []
    done = threading.Event()
    lookups.start()
    try:
        for i in range(50):
            assert lookups.submit(lambda i=i: ran.append((i, threading.current_thread().name)))
        assert lookups.submit(done.set)
        assert done.wait(5)
    finally:
        lookups.stop()
    assert [i for i, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"lookups-test"}
    assert not any(t.name == "lookups-test" for t in threading.enumerate())


def test_the_queue_is_bounded_and_a_stopped_one_takes_nothing() -> None:
    lookups = Lookups(max_queued=3, name="lookups-bounded")
    release = threading.Event()
    started = threading.Event()
    lookups.start()
    try:
        assert lookups.submit(lambda: (started.set(), release.wait(5)))
        assert started.wait(5)  # the thread is busy: what follows waits in the queue
        assert all(lookups.submit(lambda: None) for _ in range(3))
        assert not lookups.submit(lambda: None)  # full: the caller answers from memory
        assert len(lookups) == 3
    finally:
        release.set()
        lookups.stop()
    assert not lookups.submit(lambda: None)


def test_a_failing_ask_costs_only_itself() -> None:
    lookups = Lookups(name="lookups-bug")
    after = threading.Event()
    lookups.start()
    try:

        def bug() -> None:
            raise RuntimeError("a bug in one ask")

        assert lookups.submit(bug)
        assert lookups.submit(after.set)
        assert after.wait(5)
    finally:
        lookups.stop()
