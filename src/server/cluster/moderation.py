"""An operator's kick, ban, delete or password reset, carried out by every node of a cluster.

The account's change itself is in Redis (cluster/accounts.py: a ban is read
by every login, a delete removes the record), so it holds on every node at
once. What each node must still do with its own sessions (close them with a
`bye` saying why, forget a deleted name, revoke tokens) is told on
`chat:{g}:control` (cluster/keys.py), a log (cluster/bus.py: what a node's
subscription missed while its slot moved is read again), sealed like every value
a node puts in Redis: `(action, node that acted, name)`. The node's presence control
subscriber (cluster/presence.py) hands each message here; a node ignores its
own, having acted before it published. The operator's command running with
no node to ask (ops/admin.py) publishes with an origin no node has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import redis

from chat.server.cluster import bus, keys
from chat.server.cluster.box import Box
from chat.server.cluster.link import Link
from chat.server.ops.commands import ACTIONS

log = logging.getLogger("chat.server.cluster")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(tuple[str, str, str]).decode


class ClusterModeration:
    """The `Peers` of a node (ops/commands.py)."""

    def __init__(
        self, link: Link, box: Box, node_id: str, forget: Callable[[str], None] | None = None
    ) -> None:
        """`forget(blind name)`: a deleted account leaves this node's set of names."""
        self._link = link
        self._box = box
        self._node = node_id
        self._forget = forget
        self._act: Callable[..., object] | None = None

    def attach(self, act: Callable[..., object]) -> None:
        self._act = act

    def tell(self, action: str, name: str) -> None:
        """Every other node carries out `action` on `name` (redis.RedisError when Redis does
        not take it)."""
        event = self._box.seal(keys.CONTROL.encode(), _encode((action, self._node, name)))
        try:
            bus.Log(self._link, keys.CONTROL, bus.CONTROL_KEEPS).publish(self._link.client, event)
        except redis.RedisError as exc:
            self._link.failed(exc)
            raise

    def heard(self, data: bytes) -> None:
        """A message of the control channel (the presence's control subscriber thread)."""
        plain = self._box.open(keys.CONTROL.encode(), data)
        if plain is None:
            log.error("cluster: an operator's command does not open (another key?): dropped")
            return
        try:
            action, origin, name = _decode(plain)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("cluster: an operator's command does not decode: dropped")
            return
        if origin == self._node or action not in ACTIONS:
            return
        if action == "delete" and self._forget is not None:
            self._forget(self._box.blind("user", name))
        log.info("cluster: %s of %s, told by node %s", action, name, origin)
        if self._act is not None:
            self._act(action, name, wait=False)  # this thread serves the other nodes too
