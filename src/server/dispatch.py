"""What each client frame does, run on the worker pool in the sender's mailbox.

One batch is every item posted to one connection since its last run: frame
payloads, a fatal framing error, or the peer's end of stream. Output for
all recipients is appended during the batch and flushed once at its end,
so many frames share one send() per socket.
"""

from __future__ import annotations

import logging
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


class Dispatcher:
    def __init__(self, hub: Hub, store: UserStore, loop: Closer, config: ServerConfig) -> None:
        self._hub = hub
        self._store = store
        self._loop = loop
        self._config = config

    # ---- batch -----------------------------------------------------------
    def handle_batch(self, user: User, items: list[Any]) -> None:
        dirty: Dirty = {}
        for item in items:
            if user.sealed or user.closed:
                break  # nothing is answered after the final frame
            if item is PEER_EOF:
                user.close_reason, user.close_cause = "EOF without bye", Cause.BROKEN
                user.seal()
            elif isinstance(item, RemoteProtocolError):
                self._fail(user, item, dirty)
            else:
                self._handle_payload(user, item, dirty)
        self.flush(dirty)
        if user.sealed and not user.closed:
            # After the flush, so the loop usually finds the final frame sent.
            self._loop.request_close(user, user.close_reason or "closed", user.close_cause)
        elif user.backlogged:
            self._loop.request_resume(user)

    def flush(self, dirty: Dirty) -> None:
        for target in dirty:
            if not target.flush():
                if target.overflow:
                    reason, cause = "send buffer overflow (client does not read)", Cause.US
                else:
                    reason, cause = f"send failed: {target.broken}", Cause.BROKEN
                self._loop.request_close(target, reason, cause)

    def _handle_payload(self, user: User, payload: bytes, dirty: Dirty) -> None:
        try:
            message = user.conn.parse_payload(payload)
            self._handle(user, message, dirty)
        except RemoteProtocolError as err:
            if err.fatal:
                self._fail(user, err, dirty)
            else:
                self._reply(user, Error(err.code, err.message, err.msg_id), dirty)

    def _handle(self, user: User, message: Any, dirty: Dirty) -> None:
        match message:
            case Send():
                self._send(user, message, dirty)
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
                self._end(user, encode(ServerBye("internal error: cannot save the account")),
                          "store write failed", Cause.US, dirty)
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

    def _send(self, user: User, send: Send, dirty: Dirty) -> None:
        if user.rate is None and self._config.rate_limit > 0:
            user.rate = TokenBucket(self._config.rate_limit, self._config.rate_burst)
        if user.rate is not None and not user.rate.take():
            self._reply(user, Error(Code.RATE_LIMITED, "slow down", send.id), dirty)
            return
        assert user.name is not None
        sessions, delivered, missing = self._hub.recipients(user.name, send.to)
        if sessions:
            frame = encode_object({
                "type": "msg", "id": self._hub.next_msg_id(), "from": user.name,
                "to": send.to if isinstance(send.to, str) else list(send.to),
                "text": send.text, "ts": time.time(),
            })
            for target in sessions:
                target.append(frame)  # an overflow is seen, and handled, at flush
                dirty[target] = None
        self._reply(user, Sent(send.id, tuple(delivered), tuple(missing)), dirty)

    def _reply(self, user: User, message: Any, dirty: Dirty) -> None:
        user.append(encode(message))
        dirty[user] = None

    # ---- endings ---------------------------------------------------------
    def _goodbye(self, user: User, reason: str, dirty: Dirty) -> None:
        self._end(user, encode(ServerBye("bye")), reason, Cause.PEER, dirty)

    def _fail(self, user: User, err: RemoteProtocolError, dirty: Dirty) -> None:
        """A fatal error: the error frame is the last thing the peer gets (clarification 3)."""
        self._end(user, encode(Error(err.code, err.message)), f"{err.code}: {err.message}",
                  Cause.US, dirty)

    def _end(self, user: User, final: bytes, reason: str, cause: Cause, dirty: Dirty) -> None:
        """Seal with `final`; handle_batch asks the loop to close after the flush."""
        if user.seal(final):
            user.close_reason, user.close_cause = reason, cause
            self._hub.remove(user, dirty)
            dirty[user] = None


#: One text for an unknown user and a wrong password (clarification 1).
_BAD_CREDENTIALS = "invalid user name or password"
