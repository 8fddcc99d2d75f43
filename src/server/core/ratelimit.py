"""A token bucket per connection: `rate` sends per second, bursts up to `burst`.

Flood control is what mature chat servers do by default (ngIRCd, Prosody);
a sender over the limit gets the non-fatal `rate_limited` error for that
message, which is not delivered. Touched only from the connection's mailbox.
"""

from __future__ import annotations

import time


class TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
