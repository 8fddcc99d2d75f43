"""How line mode prints events: one line each, human or JSON.

Human lines start with the local time (a message from another day, from the
history or the offline queue, has its date before it), then a fixed marker
a script can match: `<name>` a message (followed by `[offline]` when it was
stored while we were away, then `[private]`, `[private to bob]` or
`[group: a, b]` when it was not for everyone), `*` a roster change, `>` the
answer to one of our messages, `!` an error. JSON lines are objects with an
`event` field; a message is the server's `msg` object, `offline` included; a
line refused before it was sent is a `local_error` object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from chat.shared.messages import BROADCAST, Msg

from . import events as ev
from .history import clock
from .textwidth import printable


def as_json(event: ev.NetEvent) -> str | None:
    obj = json_object(event)
    return None if obj is None else json.dumps(obj, ensure_ascii=False)


def json_object(event: ev.NetEvent) -> dict[str, Any] | None:
    match event:
        case ev.LoggedIn(user, online, _):
            return {"event": "online", "user": user, "users": list(online)}
        case ev.RosterChanged(joined, left, online):
            return {
                "event": "roster",
                "join": list(joined),
                "leave": list(left),
                "online": list(online),
            }
        case ev.Incoming(msg):
            to = msg.to if msg.to == BROADCAST else list(msg.to)
            obj: dict[str, Any] = {
                "event": "msg",
                "id": msg.id,
                "from": msg.sender,
                "to": to,
                "text": msg.text,
                "ts": msg.ts,
            }
            if msg.offline:
                obj["offline"] = True
            return obj
        case ev.Delivered(msg_id, delivered, missing, queued):
            return {  # as on the wire: every queued name is in `missing` too
                "event": "sent",
                "id": msg_id,
                "delivered": list(delivered),
                "missing": list(missing),
                "queued": list(queued),
            }
        case ev.SendRefused(msg_id, code, message):
            return {"event": "error", "id": msg_id, "code": code, "message": message}
        case ev.ServerNotice(code, message):
            return {"event": "error", "code": code, "message": message}
        case ev.SendUnconfirmed(ids):
            return {"event": "unconfirmed", "ids": list(ids)}
        case ev.ServerBye(reason):
            return {"event": "bye", "reason": reason}
    return None


def human(event: ev.NetEvent, me: str) -> list[str]:
    now = clock(time.time())
    match event:
        case ev.LoggedIn(_, online, _):
            return [f"{now} * online: {', '.join(online) if online else 'nobody else'}"]
        case ev.RosterChanged(joined, left, _):
            return [f"{now} * {name} joined" for name in joined] + [
                f"{now} * {name} left" for name in left
            ]
        case ev.Incoming(msg):
            return [message_line(msg, me)]
        case ev.Delivered(msg_id, delivered, _, queued) as answer:
            return [f"{now} > #{msg_id} {sent_text(delivered, queued, answer.unknown)}"]
        case ev.SendRefused(msg_id, code, message):
            return [f"{now} ! #{msg_id} {code}: {message}"]
        case ev.ServerNotice(code, message):
            return [f"{now} ! {code}: {message}"]
        case ev.SendUnconfirmed(ids):
            return [f"{now} ! #{msg_id} not confirmed: connection lost" for msg_id in ids]
        case ev.ServerBye(reason):
            return [f"{now} * server said bye: {reason}"]
    return []


def sent_text(delivered: Iterable[str], queued: Iterable[str], unknown: Iterable[str]) -> str:
    """A `sent` for people: the wire's `missing` names every queued name too, so the
    queued ones (stored for their next login) and the others (neither online nor stored:
    normally no such user) are told apart."""
    parts = [f"delivered: {', '.join(sorted(delivered)) or 'nobody'}"]
    if stored := sorted(queued):
        parts.append(f"queued for {', '.join(stored)} (offline)")
    if lost := sorted(unknown):
        parts.append(f"not delivered to {', '.join(lost)} (unknown)")
    return "; ".join(parts)


def local_error(line: int, message: str) -> str:
    """A line refused before it was sent, as a JSON line of the `--json` stream."""
    return json.dumps(
        {"event": "local_error", "line": line, "message": message}, ensure_ascii=False
    )


def message_line(msg: Msg, me: str, today: float | None = None) -> str:
    """One message as a human line; `today` (a timestamp of today) is for tests."""
    away = "[offline] " if msg.offline else ""
    return f"{stamp(msg.ts, today)} <{msg.sender}> {away}{_marker(msg, me)}{printable(msg.text)}"


def stamp(ts: float, today: float | None = None) -> str:
    """The local time of `ts`, with its date first when it is not today."""
    when = time.localtime(ts)
    if when[:3] == time.localtime(time.time() if today is None else today)[:3]:
        return clock(ts)
    return f"{time.strftime('%Y-%m-%d', when)} {clock(ts)}"


def _marker(msg: Msg, me: str) -> str:
    if msg.to == BROADCAST:
        return ""
    names = list(msg.to)
    if msg.sender == me and len(names) == 1:  # our own, from the history
        return f"[private to {names[0]}] "
    if names == [me]:
        return "[private] "
    return f"[group: {', '.join(names)}] "
