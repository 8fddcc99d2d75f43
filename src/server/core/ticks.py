"""Each thread's tick: the slots it appended to, sent together when its work is done.

A worker, the broker's subscriber and the presence's thread each append to
many slots in one go (replies, fan-outs, roster frames) and then send each
plain-TCP slot once (`native.Tick.flush`, in C, one `send()` per slot); what
a flush could not finish (a TLS slot, a full socket, an error, a final frame
out, an overflow) goes to the loop through its inbox. A tick belongs to one
thread, so each thread has its own.
"""

from __future__ import annotations

import threading

from chat.server.core import native
from chat.server.net.inbox import LoopInbox


class Ticks:
    __slots__ = ("_inbox", "_table", "local")

    def __init__(self, table: native.OutTable, inbox: LoopInbox) -> None:
        self._table = table
        self._inbox = inbox
        #: `local.tick` is this thread's tick once `current` made it (the hot path reads
        #: the attribute without a call).
        self.local = threading.local()

    def current(self) -> native.Tick:
        """This thread's tick (made on first use)."""
        tick: native.Tick | None = getattr(self.local, "tick", None)
        if tick is None:
            tick = self.local.tick = self._table.tick()
        return tick

    def flush(self) -> None:
        """Send what this thread's tick queued; tell the loop about the rest."""
        results = self.current().flush()
        if results:
            self._inbox.flushed(results)
