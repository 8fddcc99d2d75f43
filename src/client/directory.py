"""Who exists: the names this window knows are registered, and what `user_search` said.

Tab completes offline people, and `/query bbo` (a typo) is told from an absent
colleague, with v1.2's `user_search` (answers of at most 50 names, `more` when cut).
A name is known to exist when it was online, wrote a message, is a room member, or
came in an answer. An answer that was not cut settles every name under its prefix:
a name under it that it did not list does not exist. At login the client asks
for the prefix "" (everyone, for a team of up to 50), then for longer prefixes as
needed, so a check is usually answered at once from what is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chat.shared.requests import PREFIX_MAX

from .names import natural_sorted, skeleton


@dataclass
class Directory:
    me: str = ""
    known: set[str] = field(default_factory=set)
    #: Prefix (lower case) -> (the names answered, whether the answer was cut).
    searched: dict[str, tuple[frozenset[str], bool]] = field(default_factory=dict)
    #: The server answers `user_search` (it speaks v1.2).
    available: bool = False

    def add(self, *names: str) -> None:
        self.known.update(n for n in names if n)

    def found(self, prefix: str, users: Iterable[str], more: bool) -> None:
        names = frozenset(users)
        self.known |= names
        self.searched[prefix.lower()] = (names, more)

    def exists(self, name: str) -> bool | None:
        """True, False, or None: not known yet (ask `user_search` with the name)."""
        if name in self.known:
            return True
        low = name.lower()
        for prefix, (names, more) in self.searched.items():
            if not more and low.startswith(prefix):
                return name in names
        return None

    def needs_search(self, prefix: str) -> bool:
        """Whether an answer for `prefix` would tell more than what is known."""
        if not self.available or len(prefix) > PREFIX_MAX:
            return False
        low = prefix.lower()
        if low in self.searched:
            return False
        return not any(not more and low.startswith(p) for p, (_, more) in self.searched.items())

    def complete(self, prefix: str) -> list[str]:
        """Known names that start with `prefix` (case ignored), in natural order."""
        low = prefix.lower()
        return natural_sorted(n for n in self.known if n.lower().startswith(low))

    def suggest(self, name: str) -> list[str]:
        """Known names close to `name` (a typo: one letter changed, added, dropped or two
        swapped, or a look-alike), for "no such user: bbo (bob?)"."""
        shape = skeleton(name)
        return natural_sorted(
            n for n in self.known if n != self.me and (skeleton(n) == shape or _close(n, name))
        )[:3]


def _close(a: str, b: str) -> bool:
    """Damerau distance at most 1, case ignored."""
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
