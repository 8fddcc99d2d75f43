"""The operator's commands over the engines: `chat-server user ...`, `invite create`, `status`.

One implementation for the three places they run (ops/admin.py chooses):
a running server, asked through its control socket (ops/control.py); the
files of a stopped server, under its folder lock; a cluster's Redis when no
node answers here. What differs is handed in: the accounts (users file or
Redis), how a user's offline queue is dropped, how this process's sessions
end (`end_sessions`: the loop's; none on files) and who else must act
(`peers`: every other node of a cluster, told on its control channel,
cluster/moderation.py).

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

#: What each action does to the user's sessions on every process (the `bye` reason).
ENDS = {"kick": Why.KICKED, "ban": Why.BANNED, "delete": Why.ACCOUNT_DELETED}
#: The actions every process of a cluster carries out (the password: its tokens).
ACTIONS = (*ENDS, "passwd")


class Refused(Exception):
    """The command cannot be done: one line for stderr, exit 1."""


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


def _no_sessions(name: str, why: str, wait: bool = True) -> int:
    return 0


@dataclass
class Commands:
    accounts: AccountAdmin
    #: Drop a user's offline queue, durably (a delete).
    drop_queue: Callable[[str], None]
    #: End this process's sessions of a user with a `bye` saying why; how many (with
    #: `wait`: once they are told, else 0 at once).
    end_sessions: Callable[[str, str, bool], int] = _no_sessions
    peers: Peers = field(default_factory=NoPeers)
    #: The running server's facts (`status`); None on files.
    facts: Callable[[], dict[str, Any]] | None = None
    #: `--min-password`: a password the operator sets follows the same rule.
    min_password: int = 1
    #: Told a user's credentials changed (a new password, a ban, a delete): every token of
    #: the user must stop working (protocol v1.2 section 8). Tokens come with `resume`
    #: (v1.2 section 6): their store registers itself here.
    revoke_tokens: list[Callable[[str], None]] = field(default_factory=list)

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
    def act(self, action: str, name: str, wait: bool = True) -> int:
        """`action` on `name` in this process: its sessions ended, its tokens revoked."""
        if action in ("passwd", "ban", "delete"):
            for revoke in self.revoke_tokens:
                revoke(name)
        why = ENDS.get(action)
        return self.end_sessions(name, why, wait) if why is not None else 0

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
        if not self.accounts.set_password(name, password):
            raise _unknown(name)
        self._everywhere("passwd", name)
        audit("passwd", user=name, by=by)
        return []

    def user_delete(self, request: dict[str, Any], by: str) -> list[str]:
        name = _name(request)
        if not self.accounts.delete(name):
            raise _unknown(name)
        self.drop_queue(name)
        ended = self._everywhere("delete", name)
        audit("delete", user=name, by=by, sessions=ended)
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
        try:
            self.peers.tell(action, name)
        except Exception as exc:
            raise Refused(
                f"{action} {name}: done here and stored, but the other nodes were not told "
                f"({exc}); run the command again when redis is back"
            ) from None
        return ended


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
