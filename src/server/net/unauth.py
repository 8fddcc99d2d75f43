"""Connections not logged in yet: how many per address, and which goes when the server is full.

When every slot (`--max-clients`) is taken, a new connection evicts one that
has not logged in, at once and whatever its age, so a real user gets in on the
first try (a flood of connections that never log in used to hold every slot
for half the login deadline). An attacker who connects without pause would
then evict real users halfway through their login, so the choice is:

1. never one whose login is being checked (its mailbox is held for the
   password check, or waits for its account's turn), while any other is left;
2. among the others, one from the address with the most connections not
   logged in: a flood from few addresses evicts itself, and a user alone on
   an address goes last;
3. from that address, the oldest.

The loop calls this on every refused-or-evicting accept, so it costs O(1) per
change and looks at no more than `budget` connections to choose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["NotLoggedIn"]

T = TypeVar("T")


class NotLoggedIn(Generic[T]):
    """Items (the loop's transports) by connection id, grouped by peer address."""

    def __init__(self) -> None:
        self._ips: dict[int, str] = {}  # cid -> its address
        self._by_ip: dict[str, dict[int, T]] = {}  # address -> cid -> item, oldest first
        self._with: dict[int, dict[str, None]] = {}  # n -> addresses with n items
        self._most = 0  # the largest n in `_with`

    def __len__(self) -> int:
        return len(self._ips)

    def __contains__(self, cid: object) -> bool:
        return cid in self._ips

    def count(self, ip: str) -> int:
        items = self._by_ip.get(ip)
        return len(items) if items is not None else 0

    def add(self, cid: int, ip: str, item: T) -> None:
        if cid in self._ips:
            raise ValueError(f"connection {cid} is already counted")
        items = self._by_ip.setdefault(ip, {})
        self._move(ip, len(items), len(items) + 1)
        items[cid] = item
        self._ips[cid] = ip

    def pop(self, cid: int) -> T | None:
        """Forget a connection (it logged in or closed); None when it was not here."""
        ip = self._ips.pop(cid, None)
        if ip is None:
            return None
        items = self._by_ip[ip]
        item = items.pop(cid)
        self._move(ip, len(items) + 1, len(items))
        if not items:
            del self._by_ip[ip]
        return item

    def items(self) -> list[T]:
        """Every item, address by address (the deadline scan)."""
        return [item for items in self._by_ip.values() for item in items.values()]

    def victim(self, busy: Callable[[T], bool], budget: int = 64) -> T | None:
        """The one to evict (module docstring); a busy one only when the first `budget`
        looked at are all busy. None when there is none at all."""
        first_busy: T | None = None
        looked = 0
        for n in range(self._most, 0, -1):
            for ip in self._with.get(n, ()):
                for item in self._by_ip[ip].values():
                    if not busy(item):
                        return item
                    if first_busy is None:
                        first_busy = item
                    looked += 1
                    if looked >= budget:
                        return first_busy
        return first_busy

    def _move(self, ip: str, old: int, new: int) -> None:
        """`ip` goes from `old` items to `new` (one more or one less)."""
        if old:
            bucket = self._with[old]
            del bucket[ip]
            if not bucket:
                del self._with[old]
        if new:
            self._with.setdefault(new, {})[ip] = None
        if new > self._most:
            self._most = new
        elif old == self._most and old not in self._with:
            self._most = new if new else max(self._with, default=0)
