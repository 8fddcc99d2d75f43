"""A login: the password (or token) checked on a hash thread, then `auth_ok` and the full roster.

While the password is checked the mailbox holds: later frames wait, so the
replies keep the order of the frames they answer (protocol v1.1 section 7).
The check is delayed by the login throttle (on the hash executor's timer,
never on a thread), and a flood of logins waits in a bounded queue.

A login with a token (protocol v1.2 section 6, accounts/tokens.py) goes the
same way, through the same throttle (a bad, expired or revoked token counts
as a wrong password), and costs one HMAC instead of a scrypt. A login that
asked for `resume` gets a new token in its `auth_ok`, made on the hash thread
from the account's nonce as it is then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chat.server.accounts.seam import Accounts
from chat.server.accounts.throttle import HASH_QUEUE_FULL
from chat.server.accounts.tokens import Tokens
from chat.server.accounts.users_file import StoreAway, StoreError
from chat.server.core import native
from chat.server.core.ends import Ends
from chat.server.core.hub import Hub
from chat.server.core.results import LoginChecked, Outcome
from chat.server.core.user import User
from chat.server.net.inbox import Cause, LoopInbox
from chat.server.ops.audit import audit
from chat.shared.errors import Code, Refusal, RemoteProtocolError, Why, password_too_short
from chat.shared.features import RESUME
from chat.shared.messages import Auth

log = logging.getLogger("chat.server")

_FAILURES = {
    Outcome.BAD_CREDENTIALS: Code.BAD_CREDENTIALS,
    Outcome.USER_EXISTS: Code.USER_EXISTS,
}


class Throttle(Protocol):
    """The login throttle (`accounts.throttle.LoginThrottle`): it runs each check in its
    account's turn, on the hash threads, and never holds a thread while one waits."""

    def submit(self, account: str, addr: str, check: Callable[[bool], None]) -> str | None: ...

    def failure(self, account: str, addr: str) -> None: ...

    def success(self, account: str, addr: str) -> None: ...


class Login:
    def __init__(
        self,
        hub: Hub,
        accounts: Accounts,
        throttle: Throttle,
        inbox: LoopInbox,
        ends: Ends,
        tokens: Tokens,
        min_password: int = 1,
        registration: str = "open",
    ) -> None:
        #: `--min-password` for registrations: a plain int, set again by a reload (SIGHUP).
        self.min_password = min_password
        #: `--registration open|closed|invite` (a reload changes it too).
        self.registration = registration
        #: Read by the metrics at scrape time (ops/metrics.py); each is counted by the
        #: connection's mailbox, and the workers take turns (core/pool.py): plain ints.
        self.counts = {outcome: 0 for outcome in Outcome} | {"throttled": 0, "refused": 0}
        #: The same for logins made with a token (the metrics' kind="token").
        self.token_counts = {outcome: 0 for outcome in Outcome} | {"throttled": 0}
        #: Issues and checks tokens; its `days` is `--token-days` (a reload sets it).
        self.tokens = tokens
        self._hub = hub
        self._accounts = accounts
        self._throttle = throttle
        self._inbox = inbox
        self._ends = ends

    def check(self, user: User, auth: Auth, tick: native.Tick) -> bool:
        """Queue the password check for its account's turn (the throttle), then on a hash
        thread; False: the mailbox holds until it is done, and no thread waits for the turn."""
        invite_mode = auth.register and self.registration == "invite"
        if auth.register and (self.registration == "closed" or (invite_mode and not auth.invite)):
            # The server's policy, before any hashing; not a failed login (no throttle).
            text = Refusal.INVITE_NEEDED if invite_mode else None
            err = RemoteProtocolError(Code.REGISTRATION_CLOSED, text)
            user.out.append(user.conn.login_failed(err), tick)
            log.info("registration refused %s: --registration %s", user.label(), self.registration)
            self.counts["refused"] += 1
            return True
        if auth.register and len(auth.password) < self.min_password:
            # The server's policy, before any hashing; not a failed login (no throttle).
            err = RemoteProtocolError(Code.BAD_REQUEST, password_too_short(self.min_password))
            user.out.append(user.conn.login_failed(err), tick)
            log.info("registration refused %s: password too short", user.label())
            self.counts["refused"] += 1
            return True
        accounts, mailbox, throttle, ip = self._accounts, user.mailbox, self._throttle, user.ip
        tokens, by_token = self.tokens, auth.token is not None
        # `resume` is offered (core/user.py): asked for is granted, and its auth_ok has a token.
        wants_token = RESUME in (auth.features or ())

        def check(now: bool) -> None:
            if not now:  # it waited half the login deadline for its account's turn
                outcome = Outcome.WAITED_TOO_LONG
                mailbox.resume(LoginChecked(auth.user, auth.register, outcome, by_token=by_token))
                return
            outcome = Outcome.STORE_FAILED
            taken = None
            token = None
            try:
                if invite_mode:
                    # One use of the code, taken before the account is made and given
                    # back when it is not (a name taken, a store that failed).
                    taken = accounts.take_invite(auth.invite or "")
                    if taken is None:
                        outcome = Outcome.NO_INVITE
                        return
                if auth.token is not None:
                    nonce = accounts.token_nonce(auth.user)
                    ok = tokens.check(auth.token, auth.user, nonce)
                    outcome = Outcome.OK if ok else Outcome.BAD_CREDENTIALS
                    if ok and accounts.banned(auth.user):
                        outcome = Outcome.BANNED
                elif auth.register:
                    created = accounts.register(auth.user, auth.password or "")
                    outcome = Outcome.OK if created else Outcome.USER_EXISTS
                else:
                    ok = accounts.verify(auth.user, auth.password or "")
                    outcome = Outcome.OK if ok else Outcome.BAD_CREDENTIALS
                    # After the password: a wrong one says nothing about the account.
                    if ok and accounts.banned(auth.user):
                        outcome = Outcome.BANNED
                if outcome is Outcome.OK and wants_token:
                    nonce = accounts.token_nonce(auth.user)
                    token = tokens.issue(auth.user, nonce) if nonce is not None else None
            except StoreAway as exc:  # said once by the link: not again for every login
                what = "registration" if auth.register else "login"
                log.debug("%s of %s not checked: %s", what, auth.user, exc)
            except StoreError as exc:  # disk full, Redis away: say so, keep serving others
                what = "registration" if auth.register else "login"
                log.error("%s of %s failed: %s", what, auth.user, exc)
            except Exception:  # a bug: the connection is answered, the hash thread goes on
                log.exception("checking the login of %s failed", auth.user)
            finally:
                if taken is not None and outcome is not Outcome.OK:
                    try:
                        accounts.return_invite(auth.invite or "", taken)
                    except Exception:
                        log.exception("an invite code's use could not be given back")
                # Counted before the answer: the account's next turn already knows.
                if outcome is Outcome.OK:
                    throttle.success(auth.user, ip)
                elif outcome in _FAILURES:
                    throttle.failure(auth.user, ip)
                mailbox.resume(LoginChecked(auth.user, auth.register, outcome, token, by_token))

        refused = throttle.submit(auth.user, ip, check)
        if refused is not None:
            level = logging.WARNING if refused == HASH_QUEUE_FULL else logging.INFO
            log.log(level, "login of %s from %s refused: %s", auth.user, user.addr, refused)
            (self.token_counts if by_token else self.counts)["throttled"] += 1
            user.out.append(user.conn.login_failed(RemoteProtocolError(Code.RATE_LIMITED)), tick)
            return True
        return False

    def checked(self, user: User, result: LoginChecked, tick: native.Tick) -> None:
        conn = user.conn
        (self.token_counts if result.by_token else self.counts)[result.outcome] += 1
        if result.outcome is Outcome.OK:
            self._hub.subscribe(user, conn.login_succeeded(result.user, result.token), tick)
            self._inbox.logged_in(user.cid)
            what = "registered and logged in" if result.register else "logged in"
            log.info("%s %s%s", what, user.label(), " with a token" if result.by_token else "")
            if result.register:
                audit("register", user=result.user, peer=user.addr)
            return
        if result.outcome is Outcome.WAITED_TOO_LONG:
            log.info(
                "login of %s from %s refused: %s", result.user, user.addr, result.outcome.value
            )
            user.out.append(conn.login_failed(RemoteProtocolError(Code.RATE_LIMITED)), tick)
            return
        if result.outcome is Outcome.BANNED:  # v1.2 section 8: `banned`, fatal
            log.info("login refused %s: user=%s: banned", user.label(), result.user)
            frame = conn.login_failed(RemoteProtocolError(Code.BANNED))
            self._ends.end(user, frame, "banned", Cause.US, tick)
            return
        if result.outcome is Outcome.NO_INVITE:  # missing, unknown or used up: not counted
            log.info("registration refused %s: no valid invite code", user.label())
            err = RemoteProtocolError(Code.REGISTRATION_CLOSED, Refusal.INVITE_NEEDED)
            user.out.append(conn.login_failed(err), tick)
            return
        if result.outcome is Outcome.STORE_FAILED:
            why = Why.STORE_FAILED if result.register else Why.CHECK_FAILED
            self._ends.end(user, conn.login_aborted(why), result.outcome.value, Cause.US, tick)
            return
        frame = conn.login_failed(RemoteProtocolError(_FAILURES[result.outcome]))
        log.info(
            "login failed %s: user=%s: %s%s",
            user.label(),
            result.user,
            "bad, expired or revoked token" if result.by_token else result.outcome.value,
            " (too many attempts)" if conn.closed else "",
        )
        if conn.closed:
            self._ends.end(user, frame, "too_many_attempts", Cause.US, tick)
        else:
            user.out.append(frame, tick)
