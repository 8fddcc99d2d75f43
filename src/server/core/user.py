"""`User`: one connection as the protocol sees it, from `AUTH` to `CLOSED`.

The design's central primitive: one per connection, made whole at accept
time. It owns what the connection *is* in the protocol: its state machine
(`chat.shared.connection.ServerConnection`, which makes its own transitions),
its outbound slot in libchatdispatch (`OutBuffer`), its mailbox (the serial
queue of its work), its rate bucket, its roster cursor and, once logged in,
the features it was granted. The socket is not here: the loop's `Transport`
owns it (net/transport.py), and the two meet only through the mailbox
(inbound) and the slot (outbound).

Who touches what (docs/server.md, "Locking rules"): everything here is
touched only from the user's own mailbox, one worker at a time, except
`roster` and `ack_deadline`, which other users' threads change when they
announce a join or leave, under the hub lock; and the slot, which the
library guards with its own mutex.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chat.server.core.outbuf import OutBuffer
from chat.server.core.pool import Mailbox, Submitter
from chat.server.core.ratelimit import TokenBucket
from chat.shared.connection import ServerConnection
from chat.shared.features import ECHO, READ, RESUME, ROOMS, TYPING
from chat.shared.roster import RosterOutbox

#: The v1.2 features this server grants when asked (section 1): all of them.
OFFERED: tuple[str, ...] = (ROOMS, READ, ECHO, TYPING, RESUME)


class User:
    __slots__ = (
        "ack_deadline",
        "acked",
        "addr",
        "cid",
        "conn",
        "fd",
        "ip",
        "mailbox",
        "offline_upto",
        "out",
        "pending",
        "rate",
        "roster",
    )

    def __init__(
        self,
        cid: int,
        fd: int,
        addr: tuple[str, int],
        out: OutBuffer,
        rate: TokenBucket | None,
        pool: Submitter,
        handler: Callable[[User, list[Any]], int | None],
    ) -> None:
        self.cid = cid
        self.fd = fd  # for the log only: the loop owns the socket
        self.ip = addr[0]
        self.addr = f"{addr[0]}:{addr[1]}"
        self.conn = ServerConnection(offered=OFFERED)
        self.out = out
        self.rate = rate
        #: The roster cursor once the full roster is sent, and when its ack is due
        #: (guarded by the hub lock: other users' joins reach it from their threads).
        self.roster: RosterOutbox | None = None
        self.ack_deadline: float | None = None
        #: The sends whose `sent` waits for results (the store, other nodes).
        self.pending: Any = None
        #: The catch-up's position: the last offline message queued for this user.
        self.offline_upto = 0
        #: The store's number of this connection's last `offline_ack` not known stored.
        self.acked = 0
        self.mailbox = Mailbox(pool, handler, self)

    @property
    def features(self) -> frozenset[str]:
        """The v1.2 features granted at login (none for a v1.1 client)."""
        return self.conn.features

    @property
    def name(self) -> str:
        """The logged-in user's name ("" before `auth_ok`)."""
        return self.conn.user or ""

    def __repr__(self) -> str:
        return f"<User {self.label()} {self.conn.state.value}>"

    def label(self) -> str:
        return f"fd={self.fd} user={self.conn.user or '-'} peer={self.addr}"
