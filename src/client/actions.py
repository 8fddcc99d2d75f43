"""`/me`: an action, as IRC's `/me waves` shows `* alice waves`, as a plain text convention.

The protocol has no action message, so an action is a message whose text starts with
`/me ` (`ACTION_PREFIX`): this client shows `* alice waves`; a client that knows nothing
of it (any v1 client) shows the text as it is, `alice: /me waves`, which still reads
right. A client never sends `/me ...` by accident: a line starting with `/` is a
command, and `//me` (a slash doubled) is how to send that text on purpose.
"""

from __future__ import annotations

ACTION_PREFIX = "/me "


def action_text(text: str) -> str | None:
    """What the sender does (`waves`), when `text` is an action; None otherwise."""
    if text.startswith(ACTION_PREFIX) and text[len(ACTION_PREFIX) :].strip():
        return text[len(ACTION_PREFIX) :]
    return None
