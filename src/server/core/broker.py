"""The broker seam: messages for the users of other nodes, and messages from them.

A server alone has no other node (`NoBroker`: the route never names one). A
node of a cluster publishes through Redis (`cluster.broker.RedisBroker`): the
sender's node encodes the `msg` frames once, and the receiving node fans them
out to its own sessions (`Deliverer`, the core's fan-out). One contract test
suite runs against both (tests/contracts/test_broker_contract.py).

`publish` never waits: it queues, and `then(taken)` is called later (on the
broker's thread) with whether the other node took the message; the sender's
`sent` counts a recipient there as delivered only then (protocol v1.1 §6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from chat.shared.errors import LocalProtocolError


class Deliverer(Protocol):
    """What a broker hands over: messages from other nodes, for this node's sessions."""

    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        """`msg` frames for `names` here (None: everyone but the sender's sessions)."""
        ...

    def delivered(self) -> None:
        """A batch is handed over: what `deliver` queued goes out now."""
        ...


class Broker(Protocol):
    def start(self, deliverer: Deliverer) -> None: ...

    def stop(self) -> None: ...

    def publish(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[bool], None],
    ) -> None:
        """`msg` frames from `sender` for `names` on `node` (None: everyone there)."""
        ...


class NoBroker:
    """A server alone: routes never name another node."""

    def start(self, deliverer: Deliverer) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[bool], None],
    ) -> None:
        raise LocalProtocolError("a message for another node on a server without a cluster")
