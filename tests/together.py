"""Run one function on several threads at once, for the tests of what threads share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_together(
    target: Callable[..., object], args: Iterable[tuple[Any, ...]], timeout: float = 60.0
) -> None:
    """`target(*a)` for each `a` of `args`, each on a thread of its own, all started before
    any is joined. A thread still running after `timeout` fails the test (instead of hanging
    it), and the first exception a thread raised is raised here (a thread's own would only
    be printed, and the test could pass without the work done)."""
    failures: list[BaseException] = []

    def run(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {timeout} s: {stuck}"
    if failures:
        raise failures[0]
