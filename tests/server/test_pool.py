"""Mailboxes keep one connection's work in order, hold for a login, and run on real threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from chat.server.accounts.hashing import HashExecutor
from chat.server.core.pool import Mailbox, WorkerPool

from .harness import InlinePool


def test_a_mailbox_runs_batches_in_order_and_counts_payload_bytes() -> None:
    pool = InlinePool()
    seen: list[Any] = []
    box = Mailbox(pool, lambda items: seen.extend(items))
    box.post([b"ab", b"c"], 3)
    box.post([b"d"], 1)
    assert len(pool.tasks) == 1 and box.size == 4  # queued once while it has work
    pool.run()
    assert seen == [b"ab", b"c", b"d"] and box.size == 0 and len(box) == 0


def test_a_held_mailbox_keeps_the_rest_until_resume_brings_the_result() -> None:
    pool = InlinePool()
    seen: list[Any] = []

    def handler(items: list[Any]) -> int | None:
        for i, item in enumerate(items):
            seen.append(item)
            if item == b"auth":
                return i + 1
        return None

    box = Mailbox(pool, handler)
    box.post([b"auth", b"ping"], 8)
    pool.run()
    assert seen == [b"auth"] and box.held and box.size == 4
    box.post([b"later"], 5)
    pool.run()
    assert seen == [b"auth"]  # nothing runs while held
    box.resume("result")
    pool.run()
    assert seen == [b"auth", "result", b"ping", b"later"] and not box.held and box.size == 0


def test_per_connection_order_holds_with_many_threads() -> None:
    ticks: list[int] = []
    pool = WorkerPool(4, lambda: ticks.append(1))
    pool.start()
    try:
        results: dict[int, list[int]] = {c: [] for c in range(8)}
        boxes = [
            Mailbox(pool, lambda items, c=c: results[c].extend(items))  # type: ignore[misc]
            for c in range(8)
        ]
        for n in range(500):
            for box in boxes:
                box.post([n])
        deadline = time.monotonic() + 10
        while any(len(r) < 500 for r in results.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(r == list(range(500)) for r in results.values())
        assert ticks  # the end of each tick is where writes are handed to the loop
    finally:
        pool.stop()


def test_hash_jobs_start_no_earlier_than_their_delay_and_in_start_order() -> None:
    hasher = HashExecutor(1, 8)
    hasher.start()
    try:
        order: list[str] = []
        done = threading.Event()
        start = time.monotonic()
        stamps: dict[str, float] = {}

        def job(name: str) -> Callable[[], None]:
            def run() -> None:
                stamps[name] = time.monotonic() - start
                order.append(name)
                if len(order) == 3:
                    done.set()

            return run

        assert hasher.submit(job("late"), 0.3)
        assert hasher.submit(job("now"))
        assert hasher.submit(job("soon"), 0.1)
        assert done.wait(5)
        assert order == ["now", "soon", "late"] and stamps["late"] >= 0.3
    finally:
        hasher.stop()


def test_a_full_hash_queue_refuses_instead_of_growing() -> None:
    hasher = HashExecutor(1, 2)
    hasher.start()
    gate = threading.Event()
    try:
        assert hasher.submit(gate.wait)
        time.sleep(0.05)  # the thread took it: the queue is empty again
        assert hasher.submit(lambda: None) and hasher.submit(lambda: None)
        assert not hasher.submit(lambda: None)
    finally:
        gate.set()
        hasher.stop()
