"""Reconnect delays grow, are capped, jitter stays within bounds, reset starts over."""

from __future__ import annotations

import random

import pytest

from chat.client.backoff import Backoff


def test_delays_grow_and_are_capped() -> None:
    b = Backoff(base=0.5, factor=2, cap=4, jitter=0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    b.reset()
    assert b.next_delay() == 0.5


def test_jitter_stays_within_its_fraction() -> None:
    b = Backoff(base=1, factor=1, cap=10, jitter=0.2, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 100


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
