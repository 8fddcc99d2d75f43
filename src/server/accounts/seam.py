"""The accounts seam: who may log in, as the core sees it.

A server alone keeps its accounts in the encrypted users file
(`accounts.users_file.UserStore`); a node of a cluster in Redis
(`cluster.accounts.RedisAccounts`). One contract test suite runs against both
(tests/contracts/test_accounts_contract.py).

`verify` and `register` are slow (one scrypt each) and run on the hash
threads, never on a worker, and so does `token_nonce` (a Redis round trip in a
cluster); `__contains__` answers from memory at once (the
route asks it for every named recipient of a send, to know who can be
queued for), and `confirm` asks the storage about the names the memory does
not know (a cluster's lookups thread, for a send that names them).

`AccountAdmin` is what the operator's commands need beyond that
(ops/commands.py: `chat-server user ...`, `invite create`); both
implementations provide it, and every change it makes is durable before it
returns (StoreError otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chat.server.accounts.invites import Invite


class Accounts(Protocol):
    def verify(self, name: str, password: str) -> bool:
        """True for the account's password; an unknown name costs the same time."""
        ...

    def register(self, name: str, password: str) -> bool:
        """True once the new account is durable; False when the name is taken."""
        ...

    def token_nonce(self, name: str) -> bytes | None:
        """What `name`'s login tokens are bound to (accounts/tokens.py); None for no such
        account. Read at each token login (a hash thread): a new password or an unban
        replaces it, so every token issued before stops working on every process at once."""
        ...

    def __contains__(self, name: object) -> bool: ...

    def __len__(self) -> int: ...

    def confirm(self, names: Sequence[str]) -> frozenset[str]:
        """Which of `names` are accounts, asked of where the accounts are kept rather than
        of this process's memory of them, which in a cluster lags a registration on
        another node by a moment (a name found is remembered from then on). A round trip
        in a cluster: never on a worker (core/lookups.py). StoreError when the storage
        does not answer."""
        ...

    def save(self) -> None:
        """Make everything durable (at stop)."""
        ...

    def banned(self, name: str) -> bool:
        """Whether the operator banned the account (a login asks after the password)."""
        ...

    def take_invite(self, code: str) -> Invite | None:
        """One use of an invite code for a registration (`--registration invite`)."""
        ...

    def return_invite(self, code: str, taken: Invite) -> None:
        """The registration did not happen: the use taken is given back."""
        ...


class AccountAdmin(Accounts, Protocol):
    """The operator's side: each call False for an unknown name, durable when it returns."""

    def list_names(self) -> list[str]:
        """Every account, sorted, exactly as stored now (`names()` of a cluster node may
        lag by a moment: it serves `user_search`)."""
        ...

    def set_password(self, name: str, password: str) -> bool: ...

    def delete(self, name: str) -> bool: ...

    def ban(self, name: str) -> bool: ...

    def unban(self, name: str) -> bool:
        """Lift a ban; the token nonce is replaced first, so no token from before works."""
        ...

    def create_invite(self, uses: int, expires: float | None) -> str:
        """A new code with `uses` uses until `expires` (Unix time; None: never)."""
        ...
