"""Offline delivery at login: the stored messages, page by page, before any live one.

A user's first `roster_ack` makes it online (the hub's join, under the hub
lock) and, just before, puts its slot on *hold*: from then on every frame
other threads append (live messages, roster deltas) waits aside. The mailbox
then holds while a reader fetches the first page of the offline queue, after
a barrier: every message handed to the store before the join, which includes
every one that found this user offline (the route hands messages to the store
under the hub lock). Nothing is lost or delivered twice between the two.

After a page the loop is asked to say when the slot is written down to 64 KiB
(`WhenDrained`), and only then is the next read: a queue of 1,000 large
messages never needs more than about `--max-outbuf` of memory. When the queue
is done, what waited aside follows (`release`).
"""

from __future__ import annotations

import logging

from chat.server.core import native
from chat.server.core.hub import Hub
from chat.server.core.outbuf import Append
from chat.server.core.results import Drained, MarkersRead, OfflineRead
from chat.server.core.user import User
from chat.server.net.inbox import LoopInbox
from chat.server.store.seam import ReadFailed, Store
from chat.server.store.sqlite import Page
from chat.shared.errors import Code, RemoteProtocolError, Trouble
from chat.shared.features import READ
from chat.shared.messages import encode
from chat.shared.notices import MARKERS_MAX, Marker, Markers

log = logging.getLogger("chat.server")


class CatchUp:
    __slots__ = ("_hub", "_inbox", "_store")

    def __init__(self, store: Store, inbox: LoopInbox, hub: Hub) -> None:
        self._store = store
        self._inbox = inbox
        self._hub = hub

    def begin(self, user: User) -> bool:
        """A session entered CHAT (its `rooms` frame is queued): its `markers` when it was
        granted `read` (v1.2 section 3), then its offline messages. False: the mailbox
        holds until the store answers."""
        if READ not in user.features:
            return self.start(user)
        mailbox, name = user.mailbox, user.name

        def reply(page: Page | ReadFailed | None) -> None:
            if isinstance(page, Page):
                mailbox.resume(MarkersRead(page.messages))  # type: ignore[arg-type]
            else:
                mailbox.resume(MarkersRead(None))

        self._store.read_markers(name, self._hub.rooms_of(name), reply)
        return False

    def markers(self, user: User, rows: object, tick: native.Tick) -> bool:
        """The markers came: the frame first (before the offline messages), then those."""
        if rows is None:
            log.warning("read markers of %s not sent: the store could not read them", user.label())
            rows = ()
        entries = tuple(Marker(peer, upto, last, unread) for peer, upto, last, unread in rows)  # type: ignore[attr-defined]
        self._hub.markers_loaded(user.name, {m.peer: m.upto for m in entries if m.upto})
        user.out.append_first(encode(Markers(entries[:MARKERS_MAX])), tick)
        return self.start(user)

    def start(self, user: User, after: int = 0) -> bool:
        """Read the next page above `after`; False: the mailbox holds until it comes."""
        mailbox = user.mailbox

        def reply(page: Page | ReadFailed | None) -> None:
            if isinstance(page, ReadFailed):
                mailbox.resume(OfflineRead(None, page.reason))
            else:
                mailbox.resume(OfflineRead(page))

        self._store.read_offline(user.name, after, reply)
        return False

    def page(self, user: User, result: OfflineRead, tick: native.Tick) -> bool:
        """Queue one page of offline messages; the next one once the loop has written it."""
        out, page = user.out, result.page
        if result.failed is not None:
            log.error("offline messages of %s not sent: %s", user.label(), result.failed)
            error = RemoteProtocolError(Code.RATE_LIMITED, Trouble.OFFLINE_UNREADABLE)
            out.append_first(user.conn.error(error), tick)
        elif page is None:
            log.warning("offline messages of %s not sent now: readers busy", user.label())
        else:
            frames = b"".join(user.conn.reply(m) for m in page.messages)
            if out.append_first(frames, tick) is Append.OK:
                user.offline_upto = page.last
                if page.more:
                    mailbox = user.mailbox
                    self._inbox.when_drained(user.cid, lambda ok: mailbox.resume(Drained(ok)))
                    return False
        self.end(user, tick)
        return True

    def drained(self, user: User, ok: bool, tick: native.Tick) -> bool:
        if ok:
            return self.start(user, user.offline_upto)
        self.end(user, tick)
        return True

    @staticmethod
    def end(user: User, tick: native.Tick) -> None:
        """The catch-up is over (or cannot go on): what waited aside follows."""
        user.out.release(tick)  # an overflow (no memory) is reported by the flush
