"""How a connection ends, from its mailbox: its final frame, out of the roster, the close.

Every end goes the same way: the final frame (an error or a `bye`) seals the
slot, so nothing follows it; the user leaves the hub (a `leave` for others
when it was its name's last session); the loop is asked to close once the
final frame is out (a lingering close, docs/server.md "Closing").
"""

from __future__ import annotations

from chat.server.core import native
from chat.server.core.hub import Hub
from chat.server.core.user import User
from chat.server.net.inbox import Cause, LoopInbox


class Ends:
    __slots__ = ("_hub", "_inbox")

    def __init__(self, hub: Hub, inbox: LoopInbox) -> None:
        self._hub = hub
        self._inbox = inbox

    def end(self, user: User, final: bytes, reason: str, cause: Cause, tick: native.Tick) -> None:
        """The connection sent its final frame: seal it, leave the roster, let the loop close."""
        user.out.seal(final, tick)
        self._hub.remove(user, tick)
        self._inbox.close_after_flush(user.cid, reason, cause)

    def gone(self, user: User, reason: str, cause: Cause, tick: native.Tick) -> None:
        """The peer's stream ended: nothing more is sent."""
        user.conn.peer_gone()
        self._hub.remove(user, tick)
        self._inbox.close_after_flush(user.cid, reason, cause)
