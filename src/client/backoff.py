"""Reconnect delays: exponential, capped, with jitter so clients don't stampede."""

from __future__ import annotations

import random


class Backoff:
    """Delays base, base*factor, ... up to `cap`, each shaken by +-`jitter` (a fraction)."""

    def __init__(
        self,
        base: float = 0.5,
        factor: float = 2.0,
        cap: float = 15.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or factor < 1 or cap < base or not 0 <= jitter < 1:
            raise ValueError("invalid backoff parameters")
        self._base, self._factor, self._cap, self._jitter = base, factor, cap, jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        nominal = min(self._cap, self._base * self._factor**self.attempts)
        self.attempts += 1
        spread = nominal * self._jitter
        return min(self._cap, max(0.0, nominal + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempts = 0
