"""The operator's commands over the engines: `chat-server user ...`, `invite create`, `status`.

One implementation for the three places they run (ops/admin.py chooses):
a running server, asked through its control socket (ops/control.py); the
files of a stopped server, under its folder lock; a cluster's Redis when no
node answers here. What differs is handed in: the accounts (users file or
Redis), how what a deleted account had is dropped (`forget`), how this
process's sessions end (`end_sessions`: the loop's; none on files) and who
else must act (`peers`: every other node of a cluster, told on its control
channel, cluster/moderation.py).

A user's own `passwd` and `delete_account` (protocol v1.2 section 7,
core/care.py) are carried out by the same two functions as the operator's
`user passwd` and `user delete` (`change_password`, `delete_account`), so
that both do exactly the same, on every process. Tokens need no step of
their own: each is bound to the account's token nonce, which a new password
or an unban replaces and a delete removes (accounts/tokens.py).

Every change is durable before the command answers, and written to the audit
log (ops/audit.py) with who asked. A name that is not an account is refused
in one line (exit 1), as the contract says (protocol v1.2 section 8).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat.server.accounts import invites
from chat.server.accounts.seam import AccountAdmin
from chat.server.accounts.users_file import StoreError
from chat.server.ops import status
from chat.server.ops.audit import audit
from chat.shared.errors import Why
from chat.shared.messages import PASSWORD_MAX, valid_name

log = logging.getLogger("chat.server")

#: Above every message id: an `offline_ack` up to it empties a queue.
MAX_ID = 2**63 - 1

#: What each action does to the user's sessions on every process (the `bye` reason);
#: `logout` is a `passwd` with `logout_others`.
ENDS = {
    "kick": Why.KICKED,
    "ban": Why.BANNED,
    "delete": Why.ACCOUNT_DELETED,
    "logout": Why.PASSWORD_CHANGED,
}
#: The actions every process of a cluster is told of (a new password ends no session: it
#: is told for the log; its tokens are dead everywhere with the account's nonce).
ACTIONS = (*ENDS, "passwd")


class Refused(Exception):
    """The command cannot be done: one line for stderr, exit 1."""


class Unreached(Refused):
    """The change is done and stored here, but the other processes were not told (Redis
    away): the operator is told to run the command again; a user's own request is done."""


class Peers(Protocol):
    """The other processes that must act too (a cluster's nodes)."""

    def attach(self, act: Callable[..., object]) -> None:
        """What this process does when another one tells it `act(action, name, wait=False)`."""
        ...

    def tell(self, action: str, name: str) -> None:
        """Have every other process carry out `action` (ACTIONS) on `name`; raises when
        they cannot be told."""
        ...


class NoPeers:
    """A server alone: nobody else to tell."""

    def attach(self, act: Callable[..., object]) -> None:
        pass

    def tell(self, action: str, name: str) -> None:
        pass


def _no_sessions(name: str, why: str, wait: bool = True, keep: int | None = None) -> int:
    return 0


@dataclass
class Commands:
    accounts: AccountAdmin
    #: Drop what a deleted account had besides its record, durably before it returns: its
    #: offline queue, read markers and contacts, its place in every room (ownership passes
    #: on, the members are told). Messages it sent stay in the others' history.
    forget: Callable[[str], None]
    #: End this process's sessions of a user with a `bye` saying why, but the one numbered
    #: `keep`; how many (with `wait`: once they are told, else 0 at once).
    end_sessions: Callable[[str, str, bool, int | None], int] = _no_sessions
    peers: Peers = field(default_factory=NoPeers)
    #: The running server's facts (`status`); None on files.
    facts: Callable[[], dict[str, Any]] | None = None
    #: `--min-password`: a password the operator sets follows the same rule.
    min_password: int = 1

    def run(self, request: dict[str, Any], by: str) -> list[str]:
        """Carry out one request; the lines for stdout. Refused (one line) otherwise."""
        command = request.get("cmd")
        handler = _COMMANDS.get(command) if isinstance(command, str) else None
        if handler is None:
            raise Refused(f"unknown command {str(command)[:40]!r}")
        try:
            return handler(self, request, by)
        except StoreError as exc:
            refused = Refused(str(exc))
        except Refused as exc:
            refused = exc
        name = request.get("name")
        audit("refused", cmd=command, user=name if valid_name(name) else None, by=by, why=refused)
        raise refused

    # ---- what every process does (here, and told by a peer) ----------------------------------
    def act(self, action: str, name: str, wait: bool = True, keep: int | None = None) -> int:
        """`action` on `name` in this process: its sessions (but `keep`) ended."""
        why = ENDS.get(action)
        return self.end_sessions(name, why, wait, keep) if why is not None else 0

    # ---- an account's care: the operator's and the user's own ---------------------------------
    def change_password(
        self,
        name: str,
        password: str,
        by: str,
        logout: bool = False,
        keep: int | None = None,
        peer: str | None = None,
    ) -> int:
        """A new password for `name`, durable before it returns; its tokens stop working on
        every process (a new nonce). With `logout`, every session of `name` on every
        process but `keep` gets `bye` `password_changed`; how many here."""
        if not self.accounts.set_password(name, password):
            raise _unknown(name)
        action = "logout" if logout else "passwd"
        ended = self.act(action, name, keep=keep)
        unreached = self._tell(action, name)
        audit("passwd", user=name, by=by, peer=peer, sessions=ended if logout else None)
        if unreached is not None:
            raise unreached
        return ended

    def delete_account(
        self, name: str, by: str, keep: int | None = None, peer: str | None = None
    ) -> int:
        """Delete the account `name`, as protocol v1.2 sections 7 and 8 say: the record
        (with it the tokens) first, durably, so nobody logs in meanwhile; every session on
        every process but `keep` gets `bye` `account_deleted`; then what it had goes
        (`forget`). The name may be registered again. How many sessions ended here."""
        if not self.accounts.delete(name):
            raise _unknown(name)
        ended = self.act("delete", name, keep=keep)
        self.forget(name)
        unreached = self._tell("delete", name)
        audit("delete", user=name, by=by, peer=peer, sessions=ended)
        if unreached is not None:
            raise unreached
        return ended

    # ---- the commands ------------------------------------------------------------------------
    def user_list(self, request: dict[str, Any], by: str) -> list[str]:
        names = self.accounts.list_names()
        audit("user_list", by=by)
        return names

    def user_passwd(self, request: dict[str, Any], by: str) -> list[str]:
        name = _name(request)
        password = request.get("password")
        if not isinstance(password, str) or not password:
            raise Refused("no new password: give it on the first line of standard input")
        if len(password) > PASSWORD_MAX:
            raise Refused(f"the password is longer than {PASSWORD_MAX} characters")
        if len(password) < self.min_password:
            raise Refused(f"the password is shorter than --min-password {self.min_password}")
        self.change_password(name, password, by)
        return []

    def user_delete(self, request: dict[str, Any], by: str) -> list[str]:
        self.delete_account(_name(request), by)
        return []

    def user_ban(self, request: dict[str, Any], by: str) -> list[str]:
        name = _name(request)
        if not self.accounts.ban(name):
            raise _unknown(name)
        ended = self._everywhere("ban", name)
        audit("ban", user=name, by=by, sessions=ended)
        return []

    def user_unban(self, request: dict[str, Any], by: str) -> list[str]:
        name = _name(request)
        if not self.accounts.unban(name):
            raise _unknown(name)
        audit("unban", user=name, by=by)
        return []

    def user_kick(self, request: dict[str, Any], by: str) -> list[str]:
        name = _name(request)
        if name not in self.accounts:
            raise _unknown(name)
        ended = self._everywhere("kick", name)
        audit("kick", user=name, by=by, sessions=ended)
        return []

    def invite_create(self, request: dict[str, Any], by: str) -> list[str]:
        uses = request.get("uses", 1)
        days = request.get("days")
        if type(uses) is not int or not 1 <= uses <= invites.MAX_USES:
            raise Refused(f"--uses must be 1..{invites.MAX_USES}")
        if days is not None and (
            type(days) not in (int, float) or not 0 < days <= invites.MAX_DAYS
        ):
            raise Refused(f"--days must be above 0 and at most {invites.MAX_DAYS}")
        expires = invites.expiry(days)
        code = self.accounts.create_invite(uses, expires)
        audit("invite_create", uses=uses, days=days, by=by)  # never the code itself
        return [code]

    def status(self, request: dict[str, Any], by: str) -> list[str]:
        if self.facts is None:
            raise Refused("no server is running here: status needs a running server")
        facts = self.facts()
        audit("status", by=by)
        if request.get("json"):
            return [json.dumps(facts, separators=(",", ":"))]
        return status.lines(facts)

    # ---- parts --------------------------------------------------------------------------------
    def _everywhere(self, action: str, name: str) -> int:
        """`action` here, then on every other process; this process's sessions ended."""
        ended = self.act(action, name)
        unreached = self._tell(action, name)
        if unreached is not None:
            raise unreached
        return ended

    def _tell(self, action: str, name: str) -> Unreached | None:
        """Every other process carries out `action`; what to say when they could not be told
        (the change itself is done and stored)."""
        try:
            self.peers.tell(action, name)
        except Exception as exc:
            return Unreached(
                f"{action} {name}: done here and stored, but the other nodes were not told "
                f"({exc}); run the command again when redis is back"
            )
        return None


def _name(request: dict[str, Any]) -> str:
    name = request.get("name")
    if not valid_name(name):
        raise Refused(f"not a user name: {str(name)[:40]!r}")
    return str(name)


def _unknown(name: str) -> Refused:
    return Refused(f"no such user: {name}")


_COMMANDS: dict[str, Callable[[Commands, dict[str, Any], str], list[str]]] = {
    "user list": Commands.user_list,
    "user passwd": Commands.user_passwd,
    "user delete": Commands.user_delete,
    "user ban": Commands.user_ban,
    "user unban": Commands.user_unban,
    "user kick": Commands.user_kick,
    "invite create": Commands.invite_create,
    "status": Commands.status,
}
#: Every command a request may name.
NAMES = tuple(_COMMANDS)
