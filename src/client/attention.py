"""When a message is for the user's attention: a private (or group) message, or a mention.

As irssi's hilight and WeeChat's highlight: your name as a word in a message
to everyone counts ("alice:", "@alice", "Alice?"), inside another word it
does not ("malice"). Such messages are highlighted, and the terminal bell
rings for them (`bell = false` in the config file, or `--no-bell`, turns the
bell off; the highlight stays).
"""

from __future__ import annotations

import re
from functools import lru_cache

from chat.shared.messages import BROADCAST, Msg
from chat.shared.rooms import is_room


@lru_cache(maxsize=8)
def _word(name: str) -> re.Pattern[str]:
    # Names hold letters, digits, '_', '.', '-': a mention is the name not inside a longer one.
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", re.IGNORECASE)


def mentions(text: str, name: str) -> bool:
    """Whether `text` names `name` as a word (case-insensitive)."""
    return bool(name) and _word(name).search(text) is not None


def is_for_me(msg: Msg, me: str) -> bool:
    """A message that calls for attention: to me (alone or in a group), or naming me (in a
    message to everyone or to a room)."""
    if msg.sender == me:
        return False
    if msg.to == BROADCAST or is_room(msg.to):
        return mentions(msg.text, me)
    return True
