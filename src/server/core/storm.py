"""Login storms: when a roster change is told at once, and when it waits for a window.

Every user online learns of every other one, in its full roster or in a delta: N logins
tell N^2 names whatever is done. What can be bounded is the number of roster frames,
each of which costs a write, a `roster_ack` read back and handled, and a delta built:
told at once, each change is a delta to every subscriber with nothing in flight, and
every ack that finds a change waiting is another one, so a subscriber gets one delta per
round trip for as long as the storm lasts. `Storm` gathers the changes of a burst into
windows instead: every subscriber gets at most one delta per window, and the windows
grow with the storm's age, so however long a storm lasts each connection gets a bounded
number of deltas (about 1 / ln(1 + growth) while the windows grow, then one per
`longest` seconds).

Pure: the hub asks it under its lock, with the hub's clock; the hub schedules the
windows' ends (docs/server.md, "Login storms").
"""

from __future__ import annotations


class Storm:
    """More than `threshold` roster changes within `span` seconds start a storm; each
    window then lasts `growth` times the storm's age (within `shortest`..`longest`); two
    windows in a row with fewer changes than the starting rate's half over their length
    end it. Outside a storm a change is told at once, as the contract's plain reading has
    it.

    Why two: a storm whose logins pause for one window (the hash threads behind a busy
    machine for a moment) is still the same storm. Ended at the first quiet window, it
    began again a moment later, and every connection got the `threshold` changes told at
    once before it was recognised, then the short windows of a young storm: the likely
    cause of the 21 frames a loaded CI once counted where the test allows 19 (not seen
    again). The price: a storm that really ended tells the changes of one more window
    late, by at most `longest`."""

    __slots__ = (
        "_began",
        "_count",
        "_in_window",
        "_opened",
        "_quiet",
        "_since",
        "growth",
        "longest",
        "shortest",
        "span",
        "threshold",
    )

    def __init__(
        self,
        threshold: int = 8,
        span: float = 0.25,
        shortest: float = 0.05,
        longest: float = 1.0,
        growth: float = 0.5,
    ) -> None:
        self.threshold = threshold
        self.span = span
        self.shortest = shortest
        self.longest = longest
        self.growth = growth
        self._since = 0.0  # the start of the span being counted (outside a storm)
        self._count = 0
        self._began: float | None = None  # when the storm began (None: no storm)
        self._opened = 0.0  # when the current window opened
        self._in_window = 0  # changes in the current window
        self._quiet = 0  # quiet windows in a row (the storm ends at two)

    @property
    def active(self) -> bool:
        return self._began is not None

    def change(self, now: float) -> bool:
        """A roster change at `now`. True: it waits for the end of a window (the hub opens
        one with `window` when none is open); False: it is told at once."""
        if self._began is not None:
            self._in_window += 1
            return True
        if now - self._since > self.span:
            self._since, self._count = now, 0
        self._count += 1
        if self._count <= self.threshold:
            return False
        self._began = now
        self._opened, self._in_window, self._quiet = now, self._count, 0
        return True

    def window(self, now: float) -> float:
        """Seconds until the end of the window that opens now (the storm has begun)."""
        began = now if self._began is None else self._began
        self._opened = now
        return min(self.longest, max(self.shortest, self.growth * (now - began)))

    def window_ended(self, now: float) -> bool:
        """A window is over (its changes are being told). True: the storm goes on and the
        next window opens (`window`); False: it is over (the second quiet window in a
        row), changes are told at once again."""
        length = max(now - self._opened, self.shortest)
        busy = self._in_window >= self.threshold * length / (2 * self.span)
        self._in_window = 0
        self._quiet = 0 if busy else self._quiet + 1
        if self._quiet < 2:
            return True
        self._began = None
        self._since, self._count = now, 0
        return False
