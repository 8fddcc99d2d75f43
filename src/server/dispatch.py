"""What each mailbox item does: run on the worker pool, in the connection's mailbox.

A batch is every item posted to one connection since its mailbox last ran:
frame payloads, the peer going away, a deadline, a login outcome, a store's
answer. The connection (`ServerConnection`) makes every state change and
builds every reply; this module does what those imply: hashing, the roster,
the fan-out, the message store, the log. Output for all recipients is
appended during the tick and handed to the loop once at its end, so many
frames share one `send()` per socket. Nothing here touches a socket, and
nothing waits: whatever takes time (a password, a durable write, a read)
holds the mailbox and resumes it with the result, so replies keep the order
of the frames they answer.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chat.shared.errors import Code, LocalProtocolError, RemoteProtocolError, Why
from chat.shared.messages import (
    BROADCAST,
    Auth,
    ClientBye,
    HistoryPage,
    HistoryRequest,
    Msg,
    OfflineAck,
    Ping,
    Pong,
    RosterAck,
    Send,
    encode,
    encode_names,
)
from chat.shared.states import State

from . import native
from .hub import Dirty, Hub, Route
from .inbox import Cause, LoopInbox
from .msgstore import Kept, Page
from .outbuf import Append
from .pool import Mailbox
from .session import (
    Abort,
    Answered,
    Answers,
    Drained,
    Evict,
    HistoryRead,
    LoginChecked,
    OfflineRead,
    Outcome,
    PeerGone,
    Session,
    Stored,
)
from .store import StoreError
from .throttle import HASH_QUEUE_FULL

log = logging.getLogger("chat.server")


class Accounts(Protocol):
    """What the dispatcher needs of the users store (thread-safe, slow: scrypt)."""

    def verify(self, name: str, password: str) -> bool: ...

    def register(self, name: str, password: str) -> bool: ...

    def __contains__(self, name: object) -> bool: ...

    def __len__(self) -> int: ...

    def save(self) -> None: ...


class Ids(Protocol):
    def take(self, count: int) -> int: ...


Reply = Callable[[Page | None], None]


class Keeper(Protocol):
    """The message store as the dispatcher sees it (`history.HistoryService`, `NoHistory`)."""

    ids: Ids

    @property
    def keeps(self) -> bool:
        """False for a server started without a store: nothing is queued."""
        ...

    @property
    def enqueued(self) -> int: ...

    def keep(
        self, kept: Sequence[Kept], on_stored: Callable[[bool], None] | None = None
    ) -> None: ...

    def ack(self, user: str, upto: int) -> None: ...

    def read_page(
        self, user: str, peer: str, before: int | None, limit: int, reply: Reply
    ) -> None: ...

    def read_offline(self, user: str, after: int, reply: Reply) -> None: ...


class Throttle(Protocol):
    """The login throttle (`throttle.LoginThrottle`): it runs each check in its turn."""

    def submit(self, account: str, addr: str, check: Callable[[bool], None]) -> str | None: ...

    def failure(self, account: str, addr: str) -> None: ...

    def success(self, account: str, addr: str) -> None: ...


_FAILURES = {
    Outcome.BAD_CREDENTIALS: Code.BAD_CREDENTIALS,
    Outcome.USER_EXISTS: Code.USER_EXISTS,
}


class Relay(Protocol):
    """Messages for other nodes of a cluster (`cluster.relay.Relay`)."""

    def send(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[int], None] | None,
    ) -> None: ...


class NoRelay:
    """A server alone: routes never name another node."""

    def send(
        self,
        node: str,
        sender: str,
        names: Sequence[str] | None,
        frames: bytes,
        then: Callable[[int], None] | None,
    ) -> None:
        raise LocalProtocolError("a message for another node on a server without a cluster")


def _both(
    first: Callable[[bool], None] | None, second: Callable[[bool], None] | None
) -> Callable[[bool], None] | None:
    """One store callback that calls both (either may be None)."""
    if first is None or second is None:
        return first or second

    def both(ok: bool) -> None:
        first(ok)
        second(ok)

    return both


class _Waits:
    """What a group of sends waits for before its `sent`: the store making queued messages
    durable, and each other node's PUBLISH. The mailbox resumes once, when all came (from
    the store's writer and the relay's publisher: hence the lock)."""

    __slots__ = ("_left", "_lock", "_mailbox", "_reached", "_stored")

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._lock = threading.Lock()
        self._left = 1  # `ready` has not been called yet
        self._stored = True
        self._reached: set[str] = set()

    def stored(self) -> Callable[[bool], None]:
        with self._lock:
            self._left += 1

        def then(ok: bool) -> None:
            with self._lock:
                self._stored = ok
            self._done()

        return then

    def reached(self, node: str) -> Callable[[int], None]:
        with self._lock:
            self._left += 1

        def then(subscribers: int) -> None:
            if subscribers > 0:
                with self._lock:
                    self._reached.add(node)
            self._done()

        return then

    def ready(self) -> None:
        """Everything awaited is asked for."""
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left:
                return
            result = Answered(self._stored, frozenset(self._reached))
        self._mailbox.resume(result)


class Dispatcher:
    def __init__(
        self,
        hub: Hub,
        accounts: Accounts,
        throttle: Throttle,
        inbox: LoopInbox,
        keeper: Keeper,
        table: native.OutTable,
        relay: Relay,
    ) -> None:
        self._table = table
        self._relay = relay
        self._hub = hub
        self._accounts = accounts
        self._throttle = throttle
        self._inbox = inbox
        self._keeper = keeper
        self._local = threading.local()  # each worker's native.Tick

    # ---- batch -----------------------------------------------------------
    def handle_batch(self, session: Session, items: list[Any]) -> int | None:
        """Handle a mailbox batch. Returns None, or while something is awaited (a password
        check, a durable store, a read) the number of items consumed: the rest waits, so
        replies keep the order of frames. A frame parsed but not consumed is left in
        `items` parsed, so it is not fed to the connection twice."""
        dirty = self._tick()
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
            else:
                message = item
            if type(message) is Send:
                if sends and sends[0].to != message.to:
                    if self._send_group(session, sends, dirty):
                        items[index] = message
                        return index
                    sends = []
                sends.append(message)
                continue
            if sends:
                if self._send_group(session, sends, dirty):
                    items[index] = message
                    return index
                sends = []
            if not self._handle(session, message, dirty):
                return index + 1
        if sends and self._send_group(session, sends, dirty):
            return len(items)
        return None

    def end_tick(self) -> None:
        """Send what this worker's tick queued (plain TCP, in the library, one send() per
        connection); tell the loop about the rest (TLS, a full socket, an error, an end)."""
        results = self._tick().flush()
        if results:
            self._inbox.flushed(results)

    def _tick(self) -> native.Tick:
        tick: native.Tick | None = getattr(self._local, "tick", None)
        if tick is None:
            tick = self._local.tick = self._table.tick()
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
                entering = conn.state is State.ROSTER
                if entering:
                    session.out.hold()  # before the join: live messages wait for the catch-up
                try:
                    self._hub.ack_roster(session, seq, entering, dirty)
                except RemoteProtocolError as err:
                    session.out.release(dirty)
                    self._write(session, conn.error(err), dirty)
                else:
                    if conn.roster_acked():
                        return self._catch_up(session, 0)
            case HistoryRequest():
                return self._history(session, item, dirty)
            case HistoryRead(msg_id, page):
                if page is None:
                    err = RemoteProtocolError(Code.RATE_LIMITED, msg_id=msg_id)
                    self._write(session, conn.error(err), dirty)
                else:
                    reply = HistoryPage(msg_id, page.messages, page.more)
                    self._write(session, conn.reply(reply), dirty)
            case OfflineAck(upto):
                self._keeper.ack(conn.user or "", upto)
            case OfflineRead(page):
                return self._caught_up(session, page, dirty)
            case Drained(ok):
                if ok:
                    return self._catch_up(session, session.offline_upto)
                self._end_catch_up(session, dirty)
            case Stored(ok):
                answers, session.awaiting = session.awaiting, None
                if answers is None:
                    raise LocalProtocolError("a store result with no answers awaiting it")
                if not ok:  # not on disk: those recipients will not get it, say so
                    answers = dataclasses.replace(answers, queued=())
                self._write(session, self._answers(session, answers), dirty)
            case Answered(stored, reached):
                return self._answered(session, stored, reached, dirty)
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
        """Queue the password check for its turn (the throttle), then on a hash thread; the
        mailbox holds until it is done, and no thread waits for the turn."""
        accounts, mailbox, throttle = self._accounts, session.mailbox, self._throttle
        ip = session.ip

        def check(now: bool) -> None:
            if not now:  # it waited half the login deadline for its account's turn
                mailbox.resume(LoginChecked(auth.user, auth.register, Outcome.WAITED_TOO_LONG))
                return
            outcome = Outcome.STORE_FAILED
            try:
                if auth.register:
                    created = accounts.register(auth.user, auth.password)
                    outcome = Outcome.OK if created else Outcome.USER_EXISTS
                else:
                    ok = accounts.verify(auth.user, auth.password)
                    outcome = Outcome.OK if ok else Outcome.BAD_CREDENTIALS
            except StoreError as exc:  # disk full, Redis away: say so, keep serving others
                what = "registration" if auth.register else "login"
                log.error("%s of %s failed: %s", what, auth.user, exc)
            finally:
                # Counted before the answer: the account's next turn already knows.
                if outcome is Outcome.OK:
                    throttle.success(auth.user, ip)
                elif outcome in _FAILURES:
                    throttle.failure(auth.user, ip)
                mailbox.resume(LoginChecked(auth.user, auth.register, outcome))

        refused = throttle.submit(auth.user, ip, check)
        if refused is not None:
            level = logging.WARNING if refused == HASH_QUEUE_FULL else logging.INFO
            log.log(level, "login of %s from %s refused: %s", auth.user, session.addr, refused)
            failed = session.conn.login_failed(RemoteProtocolError(Code.RATE_LIMITED))
            self._write(session, failed, dirty)
            return True
        return False

    def _login_checked(self, session: Session, result: LoginChecked, dirty: Dirty) -> None:
        conn = session.conn
        if result.outcome is Outcome.OK:
            self._hub.subscribe(session, result.user, conn.login_succeeded(result.user), dirty)
            self._inbox.logged_in(session.cid)
            what = "registered and logged in" if result.register else "logged in"
            log.info("%s %s", what, session.label())
            return
        if result.outcome is Outcome.WAITED_TOO_LONG:
            log.info(
                "login of %s from %s refused: %s", result.user, session.addr, result.outcome.value
            )
            self._write(session, conn.login_failed(RemoteProtocolError(Code.RATE_LIMITED)), dirty)
            return
        if result.outcome is Outcome.STORE_FAILED:
            why = Why.STORE_FAILED if result.register else Why.CHECK_FAILED
            self._end(session, conn.login_aborted(why), result.outcome.value, Cause.US, dirty)
            return
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
    def _send_group(self, session: Session, sends: list[Send], dirty: Dirty) -> bool:
        """Fan out consecutive sends to the same `to`: one routing, one append each.

        Every message is still its own frame with its own id and `sent`;
        grouping only saves work (and send() calls) under load. True when the
        `sent` frames must wait for the store: some recipients were queued,
        and the contract answers only once those messages are on disk.
        """
        conn = session.conn
        name = conn.user or ""
        passed = tuple(session.rate is None or session.rate.take() for _ in sends)
        allowed = [s for s, ok in zip(sends, passed, strict=True) if ok]
        to = sends[0].to
        keeper, accounts, mailbox = self._keeper, self._accounts, session.mailbox
        now = time.time()

        def stamp(route: Route) -> tuple[list[Msg], tuple[str, ...]]:
            # Under the hub lock: ids in routing order, and the store sees every queued
            # message before a later login's catch-up starts (docs/server.md).
            if not allowed:
                return [], ()
            queued = (
                tuple(n for n in route.missing if n in accounts)
                if to != BROADCAST and keeper.keeps
                else ()
            )
            first = keeper.ids.take(len(allowed))
            msgs = [Msg(first + i, name, s.to, s.text, now) for i, s in enumerate(allowed)]
            # () for everyone: a message to everyone joins no two-person conversation.
            named = () if to == BROADCAST else (*route.delivered, *queued)
            # In a cluster, other nodes get the messages once they are stored: a recipient
            # there who asks for the history at once finds them (docs/cluster.md).
            publish = self._publisher(name, route, msgs, waits) if route.remote else None
            if to == BROADCAST or named:
                stored = waits.stored() if queued else None
                keeper.keep([Kept(tuple(msgs), named, queued)], _both(stored, publish))
            elif publish is not None:
                publish(False)
            return msgs, queued

        waits = _Waits(mailbox)
        route, (msgs, queued) = self._hub.route(name, to, stamp)
        targets = route.targets
        if targets.count and msgs:
            # One call, without the GIL: the same bytes to every recipient's slot; an
            # overflow is reported by the flush at the end of the tick.
            blob = b"".join(map(encode, msgs))
            self._table.fanout(dirty, blob, targets.handles, targets.count, targets.exclude)
        answers = Answers(tuple(sends), passed, route.delivered_json, route.missing, queued)
        if msgs and route.remote:
            answers = dataclasses.replace(answers, route=route, msgs=tuple(msgs))
        if queued or (msgs and route.remote):
            session.awaiting = answers  # read once the results resume the mailbox
            waits.ready()
            return True
        self._write(session, self._answers(session, answers), dirty)
        return False

    def _publisher(
        self, sender: str, route: Route, msgs: list[Msg], waits: _Waits
    ) -> Callable[[bool], None]:
        """What publishes `msgs` to the other nodes of `route`, once called (by the store's
        writer, after the messages are stored; its argument is the store's answer)."""
        relay = self._relay
        reached = [(node, names, waits.reached(node)) for node, names in route.remote]

        def publish(_stored: bool) -> None:
            frames = b"".join(map(encode, msgs))  # once for every node
            for node, names, then in reached:
                relay.send(node, sender, names, frames, then)

        return publish

    def _answered(
        self, session: Session, stored: bool, reached: frozenset[str], dirty: Dirty
    ) -> bool:
        """The store and the other nodes answered: correct `delivered`, then `sent`."""
        answers, session.awaiting = session.awaiting, None
        if answers is None:
            raise LocalProtocolError("results with no answers awaiting them")
        if not stored:
            answers = dataclasses.replace(answers, queued=())
        lost = self._hub.unreached(answers.route, set(reached)) if answers.route else ()
        if lost:  # a node that did not take it: its users did not get it
            delivered = tuple(n for n in answers.route.delivered if n not in lost)
            keeper = self._keeper
            more = tuple(n for n in lost if n in self._accounts) if keeper.keeps else ()
            answers = dataclasses.replace(
                answers,
                delivered=encode_names(delivered),
                missing=answers.missing + lost,
                queued=answers.queued + more,
            )
            if more:
                mailbox = session.mailbox
                session.awaiting = answers
                keeper.keep([Kept(answers.msgs, (), more)], lambda ok: mailbox.resume(Stored(ok)))
                return False
        self._write(session, self._answers(session, answers), dirty)
        return True

    def _answers(self, session: Session, answers: Answers) -> bytes:
        """`sent` for every send that passed the rate limit, `rate_limited` for the others."""
        conn = session.conn
        delivered, missing, queued = answers.delivered, answers.missing, answers.queued
        if all(answers.passed):  # the common case: one encoding of the lists for all
            return conn.sent((s.id for s in answers.sends), delivered, missing, queued)
        return b"".join(
            conn.sent((s.id,), delivered, missing, queued)
            if ok
            else conn.error(RemoteProtocolError(Code.RATE_LIMITED, msg_id=s.id))
            for s, ok in zip(answers.sends, answers.passed, strict=True)
        )

    # ---- history and offline delivery ------------------------------------
    def _history(self, session: Session, request: HistoryRequest, dirty: Dirty) -> bool:
        """Read a page on a reader thread; the mailbox holds until it comes (reply order)."""
        conn = session.conn
        if session.rate is not None and not session.rate.take():
            err = RemoteProtocolError(Code.RATE_LIMITED, msg_id=request.id)
            self._write(session, conn.error(err), dirty)
            return True
        mailbox, msg_id = session.mailbox, request.id
        self._keeper.read_page(
            conn.user or "",
            request.peer,
            request.before,
            request.limit,
            lambda page: mailbox.resume(HistoryRead(msg_id, page)),
        )
        return False

    def _catch_up(self, session: Session, after: int) -> bool:
        """Read the next page of the offline queue (the mailbox holds until it comes).

        The session is already online and its live messages wait aside in its
        buffer (`OutBuffer.hold`), so nothing is lost or doubled between what
        the queue holds and what arrives live; the read starts after every
        message handed to the store so far (a barrier), which includes each
        one that found this user offline before the join.
        """
        mailbox = session.mailbox
        self._keeper.read_offline(
            session.conn.user or "", after, lambda page: mailbox.resume(OfflineRead(page))
        )
        return False

    def _caught_up(self, session: Session, page: Page | None, dirty: Dirty) -> bool:
        """Queue one page of offline messages; the next one once the loop has written it."""
        out = session.out
        if page is None:
            log.warning("offline messages of %s not sent now: readers busy", session.label())
        else:
            conn = session.conn
            frames = b"".join(conn.reply(m) for m in page.messages)
            if out.append_first(frames, dirty) is Append.OK:
                session.offline_upto = page.last
                if page.more:
                    mailbox = session.mailbox
                    self._inbox.when_drained(session.cid, lambda ok: mailbox.resume(Drained(ok)))
                    return False
        self._end_catch_up(session, dirty)
        return True

    def _end_catch_up(self, session: Session, dirty: Dirty) -> None:
        session.out.release(dirty)

    # ---- output ----------------------------------------------------------
    def _write(self, session: Session, frame: bytes, dirty: Dirty) -> None:
        session.out.append(frame, dirty)

    def _end(self, session: Session, final: bytes, reason: str, cause: Cause, dirty: Dirty) -> None:
        """The connection sent its final frame: seal it, leave the roster, let the loop close."""
        session.out.seal(final, dirty)
        self._hub.remove(session, dirty)
        self._inbox.close_after_flush(session.cid, reason, cause)
