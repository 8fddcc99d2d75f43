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
    assert not storm.window_ended(now + 1.0)  # a window without changes: over
    assert not storm.active and not storm.change(now + 1.0)
