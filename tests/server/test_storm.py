"""The login storm's windows (core/storm.py): when a roster change waits, and for how long."""

from __future__ import annotations

import pytest

from chat.server.core.storm import Storm


def test_windows_grow_with_the_storms_age_and_a_quiet_one_ends_it() -> None:
    storm = Storm(threshold=8, span=0.25, shortest=0.05, longest=1.0, growth=0.5)
    now = 0.0
    assert not any(storm.change(now) for _ in range(8))  # the ordinary trickle: at once
    assert storm.change(now) and storm.active  # the ninth within the span: a storm
    assert storm.window(now) == pytest.approx(0.05)
    lengths = []
    while now < 6.0:
        for _ in range(100):
            storm.change(now)
        now += storm.window(now) if not lengths else lengths[-1]
        assert storm.window_ended(now)
        lengths.append(storm.window(now))
    assert lengths == sorted(lengths) and lengths[-1] == pytest.approx(1.0)
    # Windows in six seconds of storm: a bounded number, not one per change or round trip.
    assert len(lengths) <= 16
    assert storm.window_ended(now + 1.0)  # one window without changes: it goes on
    assert not storm.window_ended(now + 2.0)  # the second in a row: over
    assert not storm.active and not storm.change(now + 2.0)


def test_a_storm_that_pauses_for_one_window_goes_on_at_its_age() -> None:
    """Logins that stall for a window (a busy machine) are still the same storm: no
    changes told at once again, no short windows of a young storm again."""
    storm = Storm(threshold=8, span=0.25, shortest=0.05, longest=1.0, growth=0.5)
    now = 0.0
    for _ in range(9):
        storm.change(now)
    length = storm.window(now)
    while now < 1.0:  # busy windows
        for _ in range(50):
            assert storm.change(now)
        now += length
        assert storm.window_ended(now)
        length = storm.window(now)
    before = length
    now += length  # a window with no change at all
    assert storm.window_ended(now) and storm.active
    length = storm.window(now)
    assert length >= before  # the storm's age goes on: not a young storm's short window
    assert storm.change(now)  # the logins resume: they wait, they are not told at once
    for _ in range(50):
        storm.change(now)
    now += length
    assert storm.window_ended(now) and storm.active
    # Two quiet windows in a row end it; the next change is told at once.
    now += storm.window(now)
    assert storm.window_ended(now)
    now += storm.window(now)
    assert not storm.window_ended(now) and not storm.active
    assert not storm.change(now)
