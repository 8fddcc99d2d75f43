"""The accounts seam: who may log in, as the core sees it.

A server alone keeps its accounts in the encrypted users file
(`accounts.users_file.UserStore`); a node of a cluster in Redis
(`cluster.accounts.RedisAccounts`). One contract test suite runs against both
(tests/contracts/test_accounts_contract.py).

`verify` and `register` are slow (one scrypt each) and run on the hash
threads, never on a worker; `__contains__` answers from memory at once (the
route asks it for every named recipient of a send, to know who can be
queued for).
"""

from __future__ import annotations

from typing import Protocol


class Accounts(Protocol):
    def verify(self, name: str, password: str) -> bool:
        """True for the account's password; an unknown name costs the same time."""
        ...

    def register(self, name: str, password: str) -> bool:
        """True once the new account is durable; False when the name is taken."""
        ...

    def __contains__(self, name: object) -> bool: ...

    def __len__(self) -> int: ...

    def save(self) -> None:
        """Make everything durable (at stop)."""
        ...
