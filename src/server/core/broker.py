"""The broker seam: messages for the users of other nodes, and messages from them.

A server alone has no other node (`NoBroker`: the route never names one). A
node of a cluster publishes through Redis (`cluster.broker.RedisBroker`): the
sender's node hands over the messages, what crosses is what their frames are
made of, and the receiving node rebuilds the frames (through src/shared, the
same bytes) and fans them out to its own sessions (`Deliverer`, the core's
fan-out). One contract test
suite runs against both (tests/contracts/test_broker_contract.py).

`publish` never waits: it queues, and `then(taken)` is called later (on the
broker's thread) with whether the other node took the message; the sender's
`sent` counts a recipient there as delivered only then (protocol v1.1 §6).

Protocol v1.2 adds what a user's other nodes must hear of (section 10): its
own messages for its sessions granted `echo` there, its read markers moving,
and typing notices for the recipients there; these are told, never answered
(`echo`, `read`, `typing`).

Rooms have a broker of their own (`RoomBroker`, `cluster.rooms.RedisRooms`): a
room's changes are decided in Redis and reach every node, with the room's
messages, in one order, which each node applies to its replica of the rooms
(`RoomFeed`, the core's side). A server alone has none: its hub decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from chat.server.core.rooms import Event, Room, RoomBook
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError
from chat.shared.messages import Msg
from chat.shared.requests import Request


class Deliverer(Protocol):
    """What a broker hands over: messages from other nodes, for this node's sessions."""

    def deliver(self, sender: str, names: Sequence[str] | None, frames: bytes) -> None:
        """`msg` frames for `names` here (None: everyone but the sender's sessions)."""
        ...

    def delivered(self) -> None:
        """A batch is handed over: what `deliver` queued goes out now."""
        ...

    def echo(self, sender: str, frames: bytes) -> None:
        """`sender`'s own `msg` frames, for its sessions here granted `echo`."""
        ...

    def read(self, user: str, peer: str, upto: int) -> None:
        """`user` read `peer` up to `upto` on another node: its `read` sessions here hear."""
        ...

    def typing(self, sender: str, names: Sequence[str], room: str | None, frame: bytes) -> None:
        """A `typing` frame for the `typing` sessions here of `names` or of `room`'s members."""
        ...


class Broker(Protocol):
    def start(self, deliverer: Deliverer) -> None: ...

    def stop(self) -> None: ...

    def publish(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        msgs: Sequence[Msg],
        then: Callable[[bool], None],
    ) -> None:
        """`msgs` from `sender` for `names` on `node` (None: everyone there): delivered
        there as the `msg` frames `encode_msgs(msgs)`."""
        ...

    def echo(self, node: str, sender: str, msgs: Sequence[Msg]) -> None:
        """`sender`'s own `msgs`, for its sessions on `node` granted `echo`."""
        ...

    def read(self, node: str, user: str, peer: str, upto: int) -> None: ...

    def typing(
        self, node: str, sender: str, names: Sequence[str], room: str | None, frame: bytes
    ) -> None: ...


class RoomFeed(Protocol):
    """The core as a room broker sees it: the replica of the rooms (under the hub lock)
    and this node's sessions. Called from the broker's threads."""

    def scratch(self, key: str, room: Room | None, users: Iterable[str]) -> RoomBook:
        """A book of `room` as Redis has it, for a rule to run on (RoomBook.scratch)."""
        ...

    def reset(self, rooms: list[Room], versions: dict[str, int]) -> None:
        """Every room as Redis has it (a start, Redis back)."""
        ...

    def replace(self, key: str, room: Room | None, version: int) -> None:
        """One room as Redis has it (a change was missed)."""
        ...

    def version(self, key: str) -> int: ...

    def changed(self, key: str, version: int, events: Sequence[Event]) -> bool:
        """A change, applied when newer than the replica's and told to the members here."""
        ...

    def posted(self, sender: str, room: str, last: int, frames: bytes, skip: int) -> Code | None:
        """A room's messages: the verdict (None: taken and fanned out here, but to `skip`)."""
        ...

    def kept(self, msgs: tuple[Msg, ...]) -> None:
        """This node's own room messages, taken: into the store."""
        ...

    def settled(self) -> None:
        """A batch is handed over: what it queued goes out now."""
        ...


#: What a room request comes to: None (done: `ok`), or the error that answers it.
RoomAnswer = Callable[[RemoteProtocolError | None], None]
#: What a room message comes to: None (taken), the refusal's code, or False (no answer
#: came: Redis away).
RoomVerdict = Callable[[Code | bool | None], None]


class RoomBroker(Protocol):
    def start(self, feed: RoomFeed) -> None:
        """Subscribed first, then every room read (the replica), then the threads."""
        ...

    def stop(self) -> None: ...

    def request(
        self, name: str, request: Request, registered: bool, expires: float, done: RoomAnswer
    ) -> None:
        """Run a room request in Redis (never waits); `done` once, when this node has
        applied the change, or with the error. Not run at all once `expires` (monotonic)
        has passed: its caller has answered already."""
        ...

    def post(
        self,
        sender: str,
        room: str,
        msgs: tuple[Msg, ...],
        frames: bytes,
        skip: int,
        done: RoomVerdict,
    ) -> None:
        """Messages to a room, into the rooms' one order (never waits); `done` once, when
        they came back to this node with their verdict."""
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
        msgs: Sequence[Msg],
        then: Callable[[bool], None],
    ) -> None:
        raise LocalProtocolError("a message for another node on a server without a cluster")

    def echo(self, node: str, sender: str, msgs: Sequence[Msg]) -> None:
        raise LocalProtocolError("an echo for another node on a server without a cluster")

    def read(self, node: str, user: str, peer: str, upto: int) -> None:
        raise LocalProtocolError("a marker for another node on a server without a cluster")

    def typing(
        self, node: str, sender: str, names: Sequence[str], room: str | None, frame: bytes
    ) -> None:
        raise LocalProtocolError("typing for another node on a server without a cluster")
