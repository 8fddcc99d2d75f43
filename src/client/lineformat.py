"""How line mode prints events: one line each, human or JSON.

Human lines start with the local time, then a fixed marker a script can
match: `<name>` a message (followed by `[private]` or `[group: a, b]` when it
was not for everyone), `*` a roster change, `>` the answer to one of our
messages, `!` an error. JSON lines are objects with an `event` field.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chat.shared.messages import BROADCAST, Recipients

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
            return {
                "event": "msg",
                "id": msg.id,
                "from": msg.sender,
                "to": to,
                "text": msg.text,
                "ts": msg.ts,
            }
        case ev.Delivered(msg_id, delivered, missing):
            return {
                "event": "sent",
                "id": msg_id,
                "delivered": list(delivered),
                "missing": list(missing),
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
            return [f"{clock(msg.ts)} <{msg.sender}> {_marker(msg.to, me)}{printable(msg.text)}"]
        case ev.Delivered(msg_id, delivered, missing):
            text = f"delivered: {', '.join(sorted(delivered)) or 'nobody'}"
            if missing:
                text += f"; missing: {', '.join(sorted(missing))}"
            return [f"{now} > #{msg_id} {text}"]
        case ev.SendRefused(msg_id, code, message):
            return [f"{now} ! #{msg_id} {code}: {message}"]
        case ev.ServerNotice(code, message):
            return [f"{now} ! {code}: {message}"]
        case ev.SendUnconfirmed(ids):
            return [f"{now} ! #{msg_id} not confirmed: connection lost" for msg_id in ids]
        case ev.ServerBye(reason):
            return [f"{now} * server said bye: {reason}"]
    return []


def _marker(to: Recipients, me: str) -> str:
    if to == BROADCAST:
        return ""
    names = list(to)
    if names == [me]:
        return "[private] "
    return f"[group: {', '.join(names)}] "
