"""One's own account (protocol v1.2 section 7): `passwd` and `delete_account`.

Both prove the password first, as a login does and through the same login
throttle (`submit(account, addr, check)`): a wrong one counts as a failed
login of the account, across every connection, and past the free failures
the checks take turns. The check (one scrypt) and the change run on a hash
thread, never on a worker; the mailbox holds meanwhile, so the answer keeps
its place among the replies (v1.1 section 7), and comes back as a
`CareChecked` result.

The change itself is the operator's, not a copy of it (ops/commands.py
`change_password`, `delete_account`): durable before the answer, carried out
on every process of a cluster, written to the audit log (`by=self`). The
session that asked is the one spared by the sessions' ends: after `passwd`
with `logout_others` it stays; after `delete_account` it gets `ok` first and
ends itself with `bye` `account_deleted` last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chat.server.accounts.seam import Accounts
from chat.server.accounts.throttle import HASH_QUEUE_FULL
from chat.server.accounts.users_file import StoreError
from chat.server.core import native
from chat.server.core.ends import Ends
from chat.server.core.login import Throttle
from chat.server.core.results import CareChecked
from chat.server.core.results import CareOutcome as Outcome
from chat.server.core.user import User
from chat.server.net.inbox import Cause
from chat.server.ops.commands import Unreached
from chat.shared.errors import Code, RemoteProtocolError, Trouble, Why, password_too_short
from chat.shared.messages import MsgId
from chat.shared.notices import Ok
from chat.shared.requests import DeleteAccount, Passwd

log = logging.getLogger("chat.server")

PASSWD = "passwd"
DELETE = "delete_account"


class Changes(Protocol):
    """What an account's owner may have done to it (ops/commands.py `Commands`)."""

    def change_password(
        self,
        name: str,
        password: str,
        by: str,
        logout: bool = False,
        keep: int | None = None,
        peer: str | None = None,
    ) -> int: ...

    def delete_account(
        self, name: str, by: str, keep: int | None = None, peer: str | None = None
    ) -> int: ...


class Care:
    def __init__(
        self,
        accounts: Accounts,
        throttle: Throttle,
        changes: Changes,
        ends: Ends,
        min_password: int = 1,
    ) -> None:
        #: `--min-password`, for the new password of a `passwd` as for a registration (a
        #: reload sets it again).
        self.min_password = min_password
        self._accounts = accounts
        self._throttle = throttle
        self._changes = changes
        self._ends = ends

    # ---- the requests (the user's mailbox) ---------------------------------------------------
    def passwd(self, user: User, request: Passwd, tick: native.Tick) -> bool:
        """Change the password once the old one is proven; False: the mailbox holds."""
        msg_id = request.id
        if len(request.new) < self.min_password:  # the server's policy: no hash, not counted
            text = password_too_short(self.min_password)
            err = RemoteProtocolError(Code.BAD_REQUEST, text, msg_id)
            user.out.append(user.conn.error(err), tick)
            return True
        name, cid, peer, changes = user.name, user.cid, user.addr, self._changes

        def change() -> None:
            changes.change_password(name, request.new, "self", request.logout_others, cid, peer)

        return self._after_password(user, msg_id, PASSWD, request.old, change, tick)

    def delete(self, user: User, request: DeleteAccount, tick: native.Tick) -> bool:
        """Delete the account once its password is proven; False: the mailbox holds."""
        name, cid, peer, changes = user.name, user.cid, user.addr, self._changes

        def change() -> None:
            changes.delete_account(name, "self", cid, peer)

        return self._after_password(user, request.id, DELETE, request.password, change, tick)

    # ---- the result (the user's mailbox again) ------------------------------------------------
    def checked(self, user: User, result: CareChecked, tick: native.Tick) -> None:
        conn, msg_id = user.conn, result.id
        match result.outcome:
            case Outcome.OK if result.kind == DELETE:
                user.out.append(conn.reply(Ok(msg_id)), tick)
                frame = conn.goodbye(Why.ACCOUNT_DELETED)
                self._ends.end(user, frame, Why.ACCOUNT_DELETED.value, Cause.US, tick)
            case Outcome.OK:
                user.out.append(conn.reply(Ok(msg_id)), tick)
            case Outcome.BAD_CREDENTIALS:
                log.info("%s refused %s: bad credentials", result.kind, user.label())
                err = RemoteProtocolError(Code.BAD_CREDENTIALS, msg_id=msg_id)
                user.out.append(conn.error(err), tick)
            case Outcome.WAITED_TOO_LONG:
                err = RemoteProtocolError(Code.RATE_LIMITED, msg_id=msg_id)
                user.out.append(conn.error(err), tick)
            case _:
                err = RemoteProtocolError(Code.RATE_LIMITED, Trouble.INTERNAL, msg_id)
                user.out.append(conn.error(err), tick)

    # ---- parts --------------------------------------------------------------------------------
    def _after_password(
        self,
        user: User,
        msg_id: MsgId,
        kind: str,
        password: str,
        change: Callable[[], None],
        tick: native.Tick,
    ) -> bool:
        """Check `password` in the account's turn, on a hash thread; `change` when it is
        right. The mailbox holds until the `CareChecked` comes back."""
        accounts, throttle, mailbox = self._accounts, self._throttle, user.mailbox
        name, ip = user.name, user.ip

        def check(now: bool) -> None:
            if not now:  # it waited half the login deadline for the account's turn
                mailbox.resume(CareChecked(msg_id, kind, Outcome.WAITED_TOO_LONG))
                return
            outcome = Outcome.FAILED
            try:
                if not accounts.verify(name, password):
                    throttle.failure(name, ip)  # counted before the answer, as a login
                    outcome = Outcome.BAD_CREDENTIALS
                    return
                throttle.success(name, ip)
                change()
                outcome = Outcome.OK
            except Unreached as exc:  # done and stored here; the other nodes were not told
                log.warning("%s of %s: %s", kind, name, exc)
                outcome = Outcome.OK
            except StoreError as exc:  # disk full, Redis away: nothing changed, said so
                log.error("%s of %s failed: %s", kind, name, exc)
            except Exception:  # a bug, or the account went meanwhile (an operator's delete)
                log.exception("%s of %s failed", kind, name)
            finally:
                mailbox.resume(CareChecked(msg_id, kind, outcome))

        refused = self._throttle.submit(name, ip, check)
        if refused is None:
            return False
        level = logging.WARNING if refused == HASH_QUEUE_FULL else logging.INFO
        log.log(level, "%s of %s from %s refused: %s", kind, name, user.addr, refused)
        err = RemoteProtocolError(Code.RATE_LIMITED, msg_id=msg_id)
        user.out.append(user.conn.error(err), tick)
        return True
