"""The presence seam: who is online on the other nodes, and telling them who is online here.

Centrifugo's split: the core keeps who is online *here* (the hub); a
`Presence` keeps who is online *elsewhere* and tells the other nodes about
this node's users. A server alone has no elsewhere (`NoPresence`); a node of a
cluster keeps the picture in memory, fed by Redis
(`cluster.presence.RedisPresence`). One contract test suite runs against both
(tests/contracts/test_presence_contract.py).

Calls from the core never wait: `arrived` and `departed` are made under the
hub lock (so the other nodes hear a user's comings and goings in the order
the hub decided them) and only queue an announcement; `nodes_of`, `nodes` and
`everyone` read the in-memory picture under the presence's own lock, which
is taken after the hub lock and never before it. The presence calls the hub
(`PresenceListener`) with none of its own locks held.
"""

from __future__ import annotations

from typing import Protocol


class PresenceListener(Protocol):
    """What a presence tells the core (the hub): names that appear or vanish elsewhere."""

    def elsewhere(self, name: str, visible: bool) -> None:
        """`name` got its first session on another node, or lost its last one there."""
        ...

    def elsewhere_reset(self, names: set[str]) -> None:
        """The whole picture of the other nodes again (at the join, after an outage)."""
        ...

    def settled(self) -> None:
        """A batch of changes is told: what they queued goes out now."""
        ...


class Presence(Protocol):
    def start(self, listener: PresenceListener) -> None: ...

    def stop(self) -> None: ...

    def arrived(self, name: str) -> None:
        """This node's first session of `name` entered CHAT (hub lock held: queue only)."""
        ...

    def departed(self, name: str) -> None:
        """This node's last session of `name` left (hub lock held: queue only)."""
        ...

    def nodes_of(self, name: str) -> tuple[str, ...]:
        """The other nodes where `name` has a session."""
        ...

    def nodes(self) -> tuple[str, ...]:
        """The other nodes that have users."""
        ...

    def everyone(self) -> dict[str, tuple[str, ...]]:
        """Every name online elsewhere, and where."""
        ...


class NoPresence:
    """A server alone: nobody is anywhere else."""

    def start(self, listener: PresenceListener) -> None:
        pass

    def stop(self) -> None:
        pass

    def arrived(self, name: str) -> None:
        pass

    def departed(self, name: str) -> None:
        pass

    def nodes_of(self, name: str) -> tuple[str, ...]:
        return ()

    def nodes(self) -> tuple[str, ...]:
        return ()

    def everyone(self) -> dict[str, tuple[str, ...]]:
        return {}
