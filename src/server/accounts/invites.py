"""Invite codes for `--registration invite`: made by the operator, used up by registrations.

A code is 22 letters and digits (130 random bits): short enough to paste
into a chat client, far too many to guess, and safe on a command line. (It
was URL-safe base64 until a code began with `-` once in 64 and
`chat-client --invite CODE` took it for an option: the letters and digits
alone keep any code one word in every shell and argument parser.) Neither store keeps the
code itself, only a keyed digest of it (the users file: SHA-256 inside the
sealed file; Redis: the node's blind index), so a copy of the storage gives
nobody a code that works. Each code has a number of uses and may expire; a
registration takes one use before its password is hashed and gives it back
when it does not succeed (the name was taken, the store failed), so two
registrations racing for the last use cannot both have it (Prosody's
mod_invites, ergo's invite-only registration, docs/operations.md).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from dataclasses import dataclass

#: What a code is made of, and how long it is: log2(62) * 22 = 130.99 bits.
CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 22
#: The longest code a store looks up (the contract's `auth.invite` bound is 128).
CODE_MAX = 128
#: Most uses one code may have, and its longest life (`invite create --uses/--days`).
MAX_USES = 1_000_000
MAX_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Invite:
    """What a store keeps of a code: its uses left and when it stops working."""

    uses: int
    expires: float | None  # Unix time; None: never

    def valid(self, now: float) -> bool:
        return self.uses > 0 and (self.expires is None or now < self.expires)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def digest(code: str) -> str:
    """The users file's handle on a code (hex SHA-256; the file itself is sealed)."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def well_formed(code: object) -> bool:
    """Worth a look-up: a non-empty string within the bound (anything else is refused)."""
    return isinstance(code, str) and 0 < len(code) <= CODE_MAX


def expiry(days: float | None, now: float | None = None) -> float | None:
    """When a code made now for `days` days stops working (None: never)."""
    if days is None:
        return None
    return (time.time() if now is None else now) + days * 86400
