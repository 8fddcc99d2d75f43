"""What each client frame does, run on the worker pool in the sender's mailbox.

One batch is every item posted to one connection since its last run: frame
payloads, a fatal framing error, or the peer's end of stream. Output for
all recipients is appended during the batch and flushed once at its end,
so many frames share one send() per socket.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from chat.shared.errors import Code, RemoteProtocolError
from chat.shared.messages import (
    Auth,
    ClientBye,
    Error,
    Ping,
    Pong,
    RosterAck,
    Send,
    Sent,
    ServerBye,
    encode,
    encode_object,
)

from .hub import Dirty, Hub
from .ratelimit import TokenBucket
from .store import StoreError
from .user import Cause

if TYPE_CHECKING:
    from .config import ServerConfig
    from .store import UserStore
    from .user import User

log = logging.getLogger("chat.server")

PEER_EOF = object()  # the peer closed its sending side


class Closer(Protocol):
    """The part of the event loop the workers may call (thread-safe)."""

    def request_close(self, user: User, reason: str, cause: Cause) -> None: ...

    def request_resume(self, user: User) -> None: ...


class _Tick:
    """What one worker owes the world at the end of its tick."""

    __slots__ = ("closing", "dirty", "resuming")

    def __init__(self) -> None:
        self.dirty: Dirty = {}
        self.closing: dict[User, None] = {}
        self.resuming: dict[User, None] = {}


class Dispatcher:
    def __init__(self, hub: Hub, store: UserStore, loop: Closer, config: ServerConfig) -> None:
        self._hub = hub
        self._store = store
        self._loop = loop
        self._config = config
        self._local = threading.local()  # each worker's _Tick

    # ---- batch -----------------------------------------------------------
    def handle_batch(self, user: User, items: list[Any]) -> None:
        """Handle one mailbox batch; its writes are flushed at the end of the worker's tick."""
        tick = self._tick()
        dirty = tick.dirty
        sends: list[Send] = []  # consecutive sends to the same `to`, fanned out together
        for item in items:
            if user.sealed or user.closed:
                break  # nothing is answered after the final frame
            message = self._message(user, item, dirty)
            if isinstance(message, Send) and (not sends or sends[0].to == message.to):
                sends.append(message)
                continue
            if sends:
                self._send_group(user, sends, dirty)
                sends = []
            if isinstance(message, Send):
                sends.append(message)
            elif message is not None:
                self._handle(user, message, dirty)
        if sends and not user.sealed:
            self._send_group(user, sends, dirty)
        if user.sealed and not user.closed:
            tick.closing[user] = None
        elif user.backlogged:
            tick.resuming[user] = None

    def end_tick(self) -> None:
        """Flush every socket this worker wrote to, then hand closes to the loop.

        Closes go after the flush, so the loop usually finds the final frame sent.
        """
        tick = self._tick()
        if tick.dirty:
            dirty, tick.dirty = tick.dirty, {}
            self.flush(dirty)
        for user in tick.closing:
            self._loop.request_close(user, user.close_reason or "closed", user.close_cause)
        for user in tick.resuming:
            self._loop.request_resume(user)
        tick.closing.clear()
        tick.resuming.clear()

    def _tick(self) -> _Tick:
        tick = getattr(self._local, "tick", None)
        if tick is None:
            tick = self._local.tick = _Tick()
        return tick

    def flush(self, dirty: Dirty) -> None:
        for target in dirty:
            if not target.flush():
                if target.overflow:
                    reason, cause = "send buffer overflow (client does not read)", Cause.US
                else:
                    reason, cause = f"send failed: {target.broken}", Cause.BROKEN
                self._loop.request_close(target, reason, cause)

    def _message(self, user: User, item: Any, dirty: Dirty) -> Any:
        """The parsed message of one mailbox item, or None when it was answered already."""
        if item is PEER_EOF:
            user.close_reason, user.close_cause = "EOF without bye", Cause.BROKEN
            user.seal()
            return None
        if isinstance(item, RemoteProtocolError):
            self._fail(user, item, dirty)
            return None
        try:
            return user.conn.parse_payload(item)
        except RemoteProtocolError as err:
            self._refuse(user, err, dirty)
            return None

    def _refuse(self, user: User, err: RemoteProtocolError, dirty: Dirty) -> None:
        if err.fatal:
            self._fail(user, err, dirty)
        else:
            self._reply(user, Error(err.code, err.message, err.msg_id), dirty)

    def _handle(self, user: User, message: Any, dirty: Dirty) -> None:
        try:
            self._dispatch(user, message, dirty)
        except RemoteProtocolError as err:
            self._refuse(user, err, dirty)

    def _dispatch(self, user: User, message: Any, dirty: Dirty) -> None:
        match message:
            case RosterAck():
                self._hub.ack_roster(user, message, dirty)
            case Ping():
                self._reply(user, Pong(), dirty)
            case Auth():
                self._auth(user, message, dirty)
            case ClientBye():
                self._goodbye(user, "bye", dirty)

    # ---- frames ----------------------------------------------------------
    def _auth(self, user: User, auth: Auth, dirty: Dirty) -> None:
        if auth.register:
            try:
                created = self._store.register(auth.user, auth.password)
            except StoreError as exc:  # disk full, folder gone: say so, keep serving others
                log.error("registration of %s failed: %s", auth.user, exc)
                self._end(
                    user,
                    encode(ServerBye("internal error: cannot save the account")),
                    "store write failed",
                    Cause.US,
                    dirty,
                )
                return
            if not created:
                self._reply(user, Error(Code.USER_EXISTS, "user name is taken"), dirty)
                return
        elif not self._store.verify(auth.user, auth.password):
            user.conn.auth_failed()  # raises too_many_attempts (fatal) at the limit
            self._reply(user, Error(Code.BAD_CREDENTIALS, _BAD_CREDENTIALS), dirty)
            return
        if self._hub.enter_roster(user, auth.user, dirty):
            what = "registered and logged in" if auth.register else "logged in"
            log.info("%s %s", what, user.label())

    def _send_group(self, user: User, sends: list[Send], dirty: Dirty) -> None:
        """Fan out consecutive sends to the same `to`: one recipient lookup, one append each.

        Every message is still its own frame with its own id and `sent`;
        grouping only saves work (and send() calls) under load.
        """
        name = user.name
        assert name is not None
        allowed = [s for s in sends if self._within_rate(user)]
        sessions, delivered, missing = self._hub.recipients(name, sends[0].to)
        if sessions and allowed:
            to = sends[0].to if isinstance(sends[0].to, str) else list(sends[0].to)
            blob = b"".join(
                encode_object(
                    {
                        "type": "msg",
                        "id": self._hub.next_msg_id(),
                        "from": name,
                        "to": to,
                        "text": s.text,
                        "ts": time.time(),
                    }
                )
                for s in allowed
            )
            for target in sessions:
                target.append(blob)  # an overflow is seen, and handled, at flush
                dirty[target] = None
        ok, names, absent = set(map(id, allowed)), tuple(delivered), tuple(missing)
        user.append(
            b"".join(
                encode(Sent(s.id, names, absent))
                if id(s) in ok
                else encode(Error(Code.RATE_LIMITED, "slow down", s.id))
                for s in sends
            )
        )
        dirty[user] = None

    def _within_rate(self, user: User) -> bool:
        if self._config.rate_limit <= 0:
            return True
        if user.rate is None:
            user.rate = TokenBucket(self._config.rate_limit, self._config.rate_burst)
        return user.rate.take()

    def _reply(self, user: User, message: Any, dirty: Dirty) -> None:
        user.append(encode(message))
        dirty[user] = None

    # ---- endings ---------------------------------------------------------
    def _goodbye(self, user: User, reason: str, dirty: Dirty) -> None:
        self._end(user, encode(ServerBye("bye")), reason, Cause.PEER, dirty)

    def _fail(self, user: User, err: RemoteProtocolError, dirty: Dirty) -> None:
        """A fatal error: the error frame is the last thing the peer gets (clarification 3)."""
        self._end(
            user,
            encode(Error(err.code, err.message)),
            f"{err.code}: {err.message}",
            Cause.US,
            dirty,
        )

    def _end(self, user: User, final: bytes, reason: str, cause: Cause, dirty: Dirty) -> None:
        """Seal with `final`; handle_batch asks the loop to close after the flush."""
        if user.seal(final):
            user.close_reason, user.close_cause = reason, cause
            self._hub.remove(user, dirty)
            dirty[user] = None


#: One text for an unknown user and a wrong password (clarification 1).
_BAD_CREDENTIALS = "invalid user name or password"
