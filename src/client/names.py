"""User names as people see them: in natural order, and marked when they look alike.

Names are case-sensitive on the wire (protocol v1), so `alice`, `Alice` and
`a1ice` are three accounts, and one can pass for another. The client cannot
refuse them; it marks them instead, as a browser shows a look-alike domain:
every name that has the same *skeleton* as another name this window knows
(online, in the list, or seen in a message) is shown with `MARK` before it,
in the participant list, on message lines and in the prompt; a note says so
when a pair first meets, and `/who` lists them. Your own name is never
marked (you know who you are); a name that looks like yours is.

The skeleton is a small, fixed subset of Unicode's confusables (UTS #39),
restricted to the name alphabet `[A-Za-z0-9_.-]`: the name lower-cased,
then `0`->`o`, `1`->`l`, `i`->`l`, `5`->`s`, `2`->`z`, and the pairs
`rn`->`m`, `vv`->`w`, `cl`->`d`. So `alice`, `Alice`, `ALICE`, `a1ice`,
`aIice` and `alIce` share the skeleton `allce`; `rnary` and `mary` share
`mary`. `_`, `.` and `-` are left as they are (they look different enough
in a monospace font, and folding them would mark too many real names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Shown before a name that looks like another name (ASCII: every terminal shows it, and
#: no name can contain it, so it is never mistaken for a part of the name).
MARK = "!"
#: The look-alikes folded, for the help text and the docs.
FOLDS = "case, 0/o, 1/l/i, 5/s, 2/z, rn/m, vv/w, cl/d"

_SINGLE = str.maketrans({"0": "o", "1": "l", "i": "l", "5": "s", "2": "z"})
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_DIGITS = re.compile(r"(\d+)")


def skeleton(name: str) -> str:
    """What `name` looks like: two names with the same skeleton can be taken for each other."""
    folded = name.lower().translate(_SINGLE)
    for pair, single in _PAIRS:
        folded = folded.replace(pair, single)
    return folded


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: case-insensitive, and numbers by value (`x2` before `x10`), as file
    managers and WeeChat's nicklist sort; the exact name breaks ties."""
    parts: list[tuple[int, int | str]] = []
    for i, part in enumerate(_DIGITS.split(name.lower())):
        if part:
            parts.append((0, int(part)) if i % 2 else (1, part))
    return (*parts, (2, name))


def natural_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


class LookAlikes:
    """Every name this window has seen, grouped by skeleton.

    `version` changes whenever a name becomes marked, so what was drawn with
    the names (cached lines) is drawn again.
    """

    def __init__(self, me: str = "") -> None:
        self.me = me
        self._groups: dict[str, set[str]] = {}
        self.version = 0

    def add(self, *names: str) -> list[tuple[str, list[str]]]:
        """Remember these names; for each one that now looks like another: (it, the others)."""
        met: list[tuple[str, list[str]]] = []
        for name in names:
            if not name:
                continue
            group = self._groups.setdefault(skeleton(name), set())
            if name in group:
                continue
            group.add(name)
            if len(group) > 1:
                self.version += 1
                met.append((name, natural_sorted(group - {name})))
        return met

    def twins(self, name: str) -> list[str]:
        """The other known names that look like `name`."""
        return natural_sorted(self._groups.get(skeleton(name), set()) - {name})

    def marked(self, name: str) -> bool:
        return name != self.me and bool(self.twins(name))

    def show(self, name: str) -> str:
        """The name as shown: marked when it looks like another one."""
        return f"{MARK}{name}" if self.marked(name) else name

    def groups(self) -> list[list[str]]:
        """Every set of look-alike names (two or more), for `/who`."""
        found = [natural_sorted(g) for g in self._groups.values() if len(g) > 1]
        return sorted(found, key=lambda group: natural_key(group[0]))
