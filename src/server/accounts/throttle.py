"""Failed-login throttle per account and per peer address: it delays, never refuses.

Pure and thread-safe: the caller asks `delay(account, addr)` before checking a
password, waits that long (on a timer, not in a thread that others need), then
checks and reports `failure` or `success`. A register that hits `user_exists`
is a failure too, so probing for taken names is slowed the same way.

Each key (an account name, a peer address) has a score: +1 per failure, minus
one per `decay` seconds. While the score is at most the key's free allowance
nothing is delayed; past it the next attempt waits `base`, then twice that,
and so on up to `cap`, counted from the last failure. An attempt waits the
longer of its account's and its address's delay. A good login clears the
account's score (not the address's: an attacker's own account must not wash
out the address's failures) and is never delayed beyond what was already
pending. At most `max_keys` keys are kept; the least recently failed go first.

Defaults (docs/operations.md): an account gets 5 free failures, an address 20
(many users may share one address, and a test suite logs in from 127.0.0.1
all day); then 0.25, 0.5, 1, 2, 2, ... s; one failure forgiven per 30 s; at
most 100,000 keys (about 36 MB with long names and IPv6 addresses, measured).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle"]

_ACCOUNT = "u"
_ADDR = "a"


@dataclass(slots=True)
class _Entry:
    score: float  # failures, as of `stamp`
    stamp: float  # clock() of the last failure
    ready: float  # clock() before which the next attempt waits


class LoginThrottle:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        free: int = 5,
        base: float = 0.25,
        cap: float = 2.0,
        decay: float = 30.0,
        *,
        addr_free: int = 20,
        max_keys: int = 100_000,
    ) -> None:
        if free < 0 or addr_free < 0 or base < 0 or cap < 0 or decay <= 0 or max_keys < 2:
            raise ValueError("free, addr_free, base, cap >= 0; decay > 0; max_keys >= 2")
        self._clock = clock
        self._free = {_ACCOUNT: free, _ADDR: addr_free}
        self._base = base
        self._cap = cap
        self._decay = decay
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    # ---- the three calls ---------------------------------------------------
    def delay(self, account: str, addr: str) -> float:
        """Seconds the next attempt for (account, addr) must wait before its check."""
        now = self._clock()
        with self._lock:
            waits = [
                entry.ready - now
                for key in ((_ACCOUNT, account), (_ADDR, addr))
                if (entry := self._entries.get(key)) is not None
            ]
        return max([0.0, *waits])

    def failure(self, account: str, addr: str) -> None:
        """A wrong password, an unknown name, or a register that found the name taken."""
        now = self._clock()
        with self._lock:
            for kind, name in ((_ACCOUNT, account), (_ADDR, addr)):
                key = (kind, name)
                entry = self._entries.pop(key, None)
                score = 1.0 + (self._decayed(entry, now) if entry is not None else 0.0)
                ready = now + self._penalty(score, self._free[kind])
                self._entries[key] = _Entry(score, now, ready)  # now the newest key
            while len(self._entries) > self._max_keys:
                self._entries.popitem(last=False)

    def success(self, account: str, addr: str) -> None:
        """A good login: the account starts afresh; the address keeps its score."""
        with self._lock:
            self._entries.pop((_ACCOUNT, account), None)

    # ---- introspection (logs, tests) ---------------------------------------
    def failures(self, account: str | None = None, addr: str | None = None) -> float:
        """The current (decayed) score of an account or an address."""
        key = (_ACCOUNT, account) if account is not None else (_ADDR, addr or "")
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            return self._decayed(entry, now) if entry is not None else 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # ---- arithmetic ---------------------------------------------------------
    def _decayed(self, entry: _Entry, now: float) -> float:
        return max(0.0, entry.score - max(0.0, now - entry.stamp) / self._decay)

    def _penalty(self, score: float, free: int) -> float:
        # The score decays all the time: six quick failures score 5.9999, which is six.
        over = math.ceil(score - 1e-3) - free
        if over <= 0:
            return 0.0
        return min(self._cap, self._base * 2.0 ** min(over - 1, 64))
