"""The timer thread (core/deadlines.py): never early, late by little, every one, in order,
one failing callback costing only itself."""

from __future__ import annotations

import itertools
import threading
import time

from chat.server.core.deadlines import Deadlines


def test_every_deadline_runs_once_never_early_and_in_order_of_time() -> None:
    deadlines = Deadlines()
    deadlines.start()
    ran: list[tuple[int, float, float]] = []
    lock = threading.Lock()
    done = threading.Event()
    count = 500
    # Each deadline's own time is `after`'s clock plus the delay given: between `due` and
    # `due` plus the time the call took (a busy machine may preempt the test inside it).
    latest: dict[int, float] = {}
    try:
        start = time.monotonic()
        for i in range(count):
            due = start + 0.05 + (i % 50) * 0.0007  # many close together, out of order

            def fn(i: int = i, due: float = due) -> None:
                with lock:
                    ran.append((i, due, time.monotonic()))
                    if len(ran) == count:
                        done.set()

            before = time.monotonic()
            deadlines.after(due - before, fn)
            latest[i] = due + (time.monotonic() - before)
        assert done.wait(5)
    finally:
        deadlines.stop()
    assert sorted(i for i, _, _ in ran) == list(range(count))
    assert all(at >= due for _, due, at in ran)  # never early
    # In the order of their times: none ran before one whose time was surely earlier.
    for (_, due, _), (j, _, _) in itertools.pairwise(ran):
        assert due <= latest[j], f"deadline {j} (due by {latest[j]}) ran after one due {due}"
    lateness = sorted(at - due for _, due, at in ran)
    assert lateness[len(lateness) // 2] < 0.02  # on time, give or take a busy machine


def test_a_failing_callback_does_not_stop_the_ones_due_with_it() -> None:
    deadlines = Deadlines()
    deadlines.start()
    ran = threading.Event()

    def fail() -> None:
        raise RuntimeError("a bug")

    try:
        deadlines.after(0.01, fail)
        deadlines.after(0.01, ran.set)
        assert ran.wait(2)
    finally:
        deadlines.stop()


def test_stop_runs_nothing_more_and_joins() -> None:
    deadlines = Deadlines()
    deadlines.start()
    ran = threading.Event()
    deadlines.after(0.2, ran.set)
    deadlines.stop()
    assert not ran.wait(0.4)
    assert not any(t.name == "deadlines" for t in threading.enumerate())


def test_a_settled_deadline_is_dropped_uncalled_without_waking_the_thread() -> None:
    """A node's sends each leave a deadline that their answer nearly always beats: the
    thread must not wake for each (at 100 messages a second every wake-up of an idle core
    costs), nor call what is settled; what is not settled runs on time."""
    deadlines = Deadlines()
    deadlines.start()
    ran: list[tuple[int, float]] = []
    dues: list[float] = []
    late_ran = threading.Event()
    settled = [False] * 200
    try:
        time.sleep(0.05)  # the thread asleep, its first wait counted
        woke = deadlines.wakes
        for i in range(200):
            dues.append(time.monotonic() + 0.3)
            deadlines.after(
                0.3, lambda i=i: ran.append((i, time.monotonic())), lambda i=i: settled[i]
            )
            settled[i] = i != 150  # answered at once: all but one
            time.sleep(0.001)
        deadlines.after(0.45, late_ran.set, lambda: False)
        assert late_ran.wait(2)
        assert [i for i, _ in ran] == [150]
        assert ran[0][1] >= dues[150]  # never early
        # One wake-up for the first deadline due (dropping every settled one before the
        # unsettled 150th), one for the 150th, one for the last: never one per deadline.
        assert deadlines.wakes - woke <= 5, deadlines.wakes - woke
    finally:
        deadlines.stop()


def test_a_settled_check_that_fails_runs_the_deadline_and_the_thread_goes_on() -> None:
    deadlines = Deadlines()
    deadlines.start()
    ran = threading.Event()
    after = threading.Event()

    def broken() -> bool:
        raise RuntimeError("a bug")

    try:
        deadlines.after(0.01, ran.set, broken)
        deadlines.after(0.02, after.set, lambda: False)
        assert ran.wait(2) and after.wait(2)
    finally:
        deadlines.stop()
