"""The results of our own work and the loop's notices, each carried out in its mailbox.

What the connection asked for and waited on comes back here (a password
or a token checked, an account changed, a group of sends answered, a page
read, the catch-up drained, the acknowledged messages stored), and so does
what the loop tells it (the peer went away, a deadline passed, the client
does not read). A handler returns False when the mailbox must hold again.
"""

from __future__ import annotations

from chat.server.core import native
from chat.server.core.care import Care
from chat.server.core.catchup import CatchUp
from chat.server.core.ends import Ends
from chat.server.core.fanout import Fanout
from chat.server.core.frames import PeerFrames
from chat.server.core.login import Login
from chat.server.core.results import (
    Abort,
    AcksStored,
    Answered,
    CareChecked,
    Confirmed,
    Drained,
    Evict,
    HistoryRead,
    LoginChecked,
    MarkersRead,
    Notice,
    OfflineRead,
    PeerGone,
    Result,
    RoomDone,
    RoomPosted,
)
from chat.server.core.user import User
from chat.server.net.inbox import Cause
from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError, Trouble
from chat.shared.messages import HistoryPage
from chat.shared.notices import Ok


class Outcomes:
    def __init__(
        self,
        login: Login,
        fanout: Fanout,
        catchup: CatchUp,
        frames: PeerFrames,
        ends: Ends,
        care: Care,
    ) -> None:
        self._login = login
        self._care = care
        self._fanout = fanout
        self._catchup = catchup
        self._frames = frames
        self._ends = ends

    def handle(self, user: User, item: Result | Notice, tick: native.Tick) -> bool:
        conn = user.conn
        match item:
            case Answered():
                return self._fanout.answered(user, item, tick)
            case Confirmed():
                return not self._fanout.send(user, list(item.sends), tick, item)
            case LoginChecked():
                self._login.checked(user, item, tick)
            case CareChecked():
                self._care.checked(user, item, tick)
            case HistoryRead(msg_id, page, failed):
                if page is None:
                    text = Trouble.HISTORY_UNREADABLE if failed is not None else None
                    err = RemoteProtocolError(Code.RATE_LIMITED, text, msg_id)
                    user.out.append(conn.error(err), tick)
                else:
                    reply = HistoryPage(msg_id, page.messages, page.more)
                    user.out.append(conn.reply(reply), tick)
            case OfflineRead():
                return self._catchup.page(user, item, tick)
            case Drained(ok):
                return self._catchup.drained(user, ok, tick)
            case MarkersRead(rows):
                return self._catchup.markers(user, rows, tick)
            case RoomDone(msg_id, error):  # a cluster's room request (cluster/rooms.py)
                frame = conn.error(error) if error is not None else conn.reply(Ok(msg_id))
                user.out.append(frame, tick)
            case RoomPosted():
                return self._fanout.room_answered(user, item, tick)
            case AcksStored():
                self._frames.bye(user, tick)
            case PeerGone(reason, cause):
                self._ends.gone(user, reason, cause, tick)
            case Abort(err, reason):
                self._ends.end(user, conn.error(err), reason, Cause.US, tick)
            case Evict(why):
                self._ends.end(user, conn.goodbye(why), why, Cause.US, tick)
            case _:
                raise LocalProtocolError(f"no handler for {item!r}")
        return True
