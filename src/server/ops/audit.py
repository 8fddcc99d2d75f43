"""The audit trail: who changed which account, and when, one grep-able line each.

Every registration, password change, delete, ban, unban, kick, invite made
and operator command goes to the `chat.server.audit` logger (the server's log:
its file or the journal, with the time at the start of the line):

    ... INFO chat.server.audit: audit: ban user=mallory by=operator:uid=0,pid=4242 sessions=2

`grep ' audit: ' server.log` lists them all, `grep 'user=mallory'` one
account's. What a line never holds: a password, a token, an invite code (its
uses and expiry only), a message. Values are names and numbers; anything else
(a peer address) is quoted by `repr` so a line is always one line.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("chat.server.audit")

_PLAIN = re.compile(r"[A-Za-z0-9_.:@\[\],=/-]+")


def audit(event: str, **fields: object) -> None:
    """`audit: EVENT key=value ...` at INFO (None values left out)."""
    parts = [f"audit: {event}"]
    parts += [f"{key}={_value(v)}" for key, v in fields.items() if v is not None]
    log.info("%s", " ".join(parts))


def _value(value: object) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else repr(text)
