"""What each mailbox item does: run on the worker pool, in the connection's mailbox.

A batch is every item posted to one connection since its mailbox last ran:
frame payloads, the peer going away, a deadline, a login outcome. The
connection (`ServerConnection`) makes every state change and builds every
reply; this module does what those imply: hashing, the roster, the fan-out,
the log. Output for all recipients is appended during the tick and handed to
the loop once at its end, so many frames share one `send()` per socket.
Nothing here touches a socket.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError, Why
from chat.shared.messages import (
    Auth,
    ClientBye,
    Msg,
    Ping,
    Pong,
    RosterAck,
    Send,
    Sent,
    encode,
)
from chat.shared.states import State

from .hub import Dirty, Hub
from .inbox import Cause, LoopInbox
from .session import Abort, Evict, LoginChecked, Outcome, PeerGone, Session
from .store import StoreError

if TYPE_CHECKING:
    from .hashing import HashExecutor

log = logging.getLogger("chat.server")


class Accounts(Protocol):
    """What the dispatcher needs of the users store (thread-safe, slow: scrypt)."""

    def verify(self, name: str, password: str) -> bool: ...

    def register(self, name: str, password: str) -> bool: ...


class Throttle(Protocol):
    """The login throttle (`throttle.LoginThrottle`)."""

    def delay(self, account: str, addr: str) -> float: ...

    def failure(self, account: str, addr: str) -> None: ...

    def success(self, account: str, addr: str) -> None: ...


class _Tick:
    """What one worker owes the loop at the end of its tick."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty: Dirty = {}


_FAILURES = {
    Outcome.BAD_CREDENTIALS: Code.BAD_CREDENTIALS,
    Outcome.USER_EXISTS: Code.USER_EXISTS,
}


class Dispatcher:
    def __init__(
        self,
        hub: Hub,
        accounts: Accounts,
        throttle: Throttle,
        hasher: HashExecutor,
        inbox: LoopInbox,
    ) -> None:
        self._hub = hub
        self._accounts = accounts
        self._throttle = throttle
        self._hasher = hasher
        self._inbox = inbox
        self._local = threading.local()  # each worker's _Tick

    # ---- batch -----------------------------------------------------------
    def handle_batch(self, session: Session, items: list[Any]) -> int | None:
        """Handle a mailbox batch. Returns None, or while a login is being hashed the
        number of items consumed: the rest waits, so replies keep the order of frames."""
        dirty = self._tick().dirty
        conn = session.conn
        sends: list[Send] = []  # consecutive sends to the same `to`, fanned out together
        for index, item in enumerate(items):
            if conn.closed:
                continue  # nothing is answered after the final frame
            if type(item) is bytes:
                try:
                    message = conn.receive(item)
                except RemoteProtocolError as err:
                    message = err
                if isinstance(message, Send):
                    if sends and sends[0].to != message.to:
                        self._send_group(session, sends, dirty)
                        sends = []
                    sends.append(message)
                    continue
            else:
                message = item
            if sends:
                self._send_group(session, sends, dirty)
                sends = []
            if not self._handle(session, message, dirty):
                return index + 1
        if sends:
            self._send_group(session, sends, dirty)
        return None

    def end_tick(self) -> None:
        """Hand every buffer this worker wrote to over to the loop, in one request."""
        tick = self._tick()
        if tick.dirty:
            cids = [s.cid for s in tick.dirty]
            tick.dirty = {}
            self._inbox.flush(cids)

    def _tick(self) -> _Tick:
        tick = getattr(self._local, "tick", None)
        if tick is None:
            tick = self._local.tick = _Tick()
        return tick

    def _handle(self, session: Session, item: Any, dirty: Dirty) -> bool:
        """One message or control item; False when the mailbox must hold for a login."""
        conn = session.conn
        match item:
            case RemoteProtocolError() as err:
                if err.fatal:
                    self._end(
                        session, conn.error(err), f"{err.code}: {err.message}", Cause.US, dirty
                    )
                else:
                    self._write(session, conn.error(err), dirty)
            case Ping():
                self._write(session, conn.reply(Pong()), dirty)
            case RosterAck(seq):
                try:
                    self._hub.ack_roster(session, seq, conn.state is State.ROSTER, dirty)
                except RemoteProtocolError as err:
                    self._write(session, conn.error(err), dirty)
                else:
                    conn.roster_acked()
            case Auth():
                return self._check_login(session, item, dirty)
            case LoginChecked():
                self._login_checked(session, item, dirty)
            case ClientBye():
                self._end(session, conn.goodbye(Why.BYE), "bye", Cause.PEER, dirty)
            case PeerGone(reason, cause):
                conn.peer_gone()
                self._hub.remove(session, dirty)
                self._inbox.close_after_flush(session.cid, reason, cause)
            case Abort(err, reason):
                self._end(session, conn.error(err), reason, Cause.US, dirty)
            case Evict(why):
                self._end(session, conn.goodbye(why), why, Cause.US, dirty)
            case _:
                raise LocalProtocolError(f"no handler for {item!r}")
        return True

    # ---- login -----------------------------------------------------------
    def _check_login(self, session: Session, auth: Auth, dirty: Dirty) -> bool:
        """Queue the password check on the hash threads; the mailbox holds until it is done."""
        accounts, mailbox = self._accounts, session.mailbox

        def check() -> None:
            outcome = Outcome.STORE_FAILED
            try:
                if auth.register:
                    created = accounts.register(auth.user, auth.password)
                    outcome = Outcome.OK if created else Outcome.USER_EXISTS
                else:
                    ok = accounts.verify(auth.user, auth.password)
                    outcome = Outcome.OK if ok else Outcome.BAD_CREDENTIALS
            except StoreError as exc:  # disk full, folder gone: say so, keep serving others
                log.error("registration of %s failed: %s", auth.user, exc)
            finally:
                mailbox.resume(LoginChecked(auth.user, auth.register, outcome))

        delay = self._throttle.delay(auth.user, session.ip)
        if not self._hasher.submit(check, delay):
            log.warning("login of %s from %s refused: hash queue full", auth.user, session.addr)
            failed = session.conn.login_failed(RemoteProtocolError(Code.RATE_LIMITED))
            self._write(session, failed, dirty)
            return True
        return False

    def _login_checked(self, session: Session, result: LoginChecked, dirty: Dirty) -> None:
        conn = session.conn
        if result.outcome is Outcome.OK:
            self._throttle.success(result.user, session.ip)
            self._hub.subscribe(session, result.user, conn.login_succeeded(result.user), dirty)
            self._inbox.logged_in(session.cid)
            what = "registered and logged in" if result.register else "logged in"
            log.info("%s %s", what, session.label())
            return
        if result.outcome is Outcome.STORE_FAILED:
            final = conn.login_aborted(Why.STORE_FAILED)
            self._end(session, final, "store write failed", Cause.US, dirty)
            return
        self._throttle.failure(result.user, session.ip)
        frame = conn.login_failed(RemoteProtocolError(_FAILURES[result.outcome]))
        log.info(
            "login failed %s: user=%s: %s%s",
            session.label(),
            result.user,
            result.outcome.value,
            " (too many attempts)" if conn.closed else "",
        )
        if conn.closed:
            self._end(session, frame, "too_many_attempts", Cause.US, dirty)
        else:
            self._write(session, frame, dirty)

    # ---- messages --------------------------------------------------------
    def _send_group(self, session: Session, sends: list[Send], dirty: Dirty) -> None:
        """Fan out consecutive sends to the same `to`: one recipient lookup, one append each.

        Every message is still its own frame with its own id and `sent`;
        grouping only saves work (and send() calls) under load.
        """
        conn = session.conn
        name = conn.user
        assert name is not None
        allowed = [s for s in sends if session.rate is None or session.rate.take()]
        targets, delivered, missing = self._hub.recipients(name, sends[0].to)
        if targets and allowed:
            hub, now = self._hub, time.time()
            blob = b"".join(
                encode(Msg(hub.next_msg_id(), name, s.to, s.text, now)) for s in allowed
            )
            for target in targets:
                target.out.append(blob)  # an overflow is seen, and handled, at the flush
                dirty[target] = None
        ok, names, absent = set(map(id, allowed)), tuple(delivered), tuple(missing)
        self._write(
            session,
            b"".join(
                conn.reply(Sent(s.id, names, absent))
                if id(s) in ok
                else conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=s.id))
                for s in sends
            ),
            dirty,
        )

    # ---- output ----------------------------------------------------------
    def _write(self, session: Session, frame: bytes, dirty: Dirty) -> None:
        session.out.append(frame)
        dirty[session] = None

    def _end(self, session: Session, final: bytes, reason: str, cause: Cause, dirty: Dirty) -> None:
        """The connection sent its final frame: seal it, leave the roster, let the loop close."""
        session.out.seal(final)
        dirty[session] = None
        self._hub.remove(session, dirty)
        self._inbox.close_after_flush(session.cid, reason, cause)
