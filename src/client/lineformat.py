"""How line mode prints events: one line each, human or JSON.

Human lines start with the local time (a message from another day, from the
history or the offline queue, has its date before it), then a fixed marker
a script can match: `<name>` a message (followed by `[offline]` when it was
stored while we were away, then `[private]`, `[private to bob]`,
`[group: a, b]` or `[#room]` when it was not for everyone), `*` a roster
change or a room's event, `>` the answer to one of our messages, `!` an
error. The lines of a message of several lines follow its first, indented.
JSON lines are objects with an `event` field; a message is the server's
`msg` object, `offline` included; a line refused before it was sent is a
`local_error` object, any other failure said on stderr a `fatal` one. The
v1.2 notices (`rooms`, `room_event`, `markers`, `read`, `typing`) are JSON
objects with the server's fields (`from` and `with` spelled as on the wire).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

from chat.shared.messages import BROADCAST, Msg, RoomEvent
from chat.shared.notices import RoomEventKind as Kind
from chat.shared.rooms import is_room

from . import events as ev
from .history import TIME_WIDTH, clock
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
            to = msg.to if isinstance(msg.to, str) else list(msg.to)
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
        case ev.Delivered(msg_id, delivered, missing, queued, stored) as answer:
            obj = {  # as on the wire: every queued name is in `missing` too
                "event": "sent",
                "id": msg_id,
                "delivered": list(delivered),
                "missing": list(missing),
                "queued": list(queued),
                "unknown": list(answer.unknown),  # missing and not queued: no such user
            }
            if stored is not None:
                obj["msg_id"] = stored
            return obj
        case ev.RoomDelivered(msg_id, stored, room):
            return {"event": "sent", "id": msg_id, "msg_id": stored, "room": room}
        case ev.RoomsState(rooms, invites):
            return {
                "event": "rooms",
                "rooms": [
                    {
                        "room": r.room,
                        "topic": r.topic,
                        "invite_only": r.invite_only,
                        "owner": r.owner,
                        "members": list(r.members),
                        "last": r.last,
                    }
                    for r in rooms
                ],
                "invites": [{"room": i.room, "by": i.by} for i in invites],
            }
        case ev.RoomNotice(e):
            obj = {"event": "room_event", "room": e.room, "kind": e.event, "user": e.user}
            obj["ts"] = e.ts
            if e.by is not None:
                obj["by"] = e.by
            if e.topic is not None:
                obj["topic"] = e.topic
            return obj
        case ev.MarkersLoaded(markers):
            return {
                "event": "markers",
                "markers": [
                    {"with": k.peer, "upto": k.upto, "last": k.last, "unread": k.unread}
                    for k in markers
                ],
            }
        case ev.ReadMoved(peer, upto):
            return {"event": "read", "with": peer, "upto": upto}
        case ev.TypingSeen(sender, to, state):
            return {
                "event": "typing",
                "from": sender,
                "to": to if isinstance(to, str) else list(to),
                "state": state,
            }
        case ev.RequestDone(request_id, kind, room, user):
            obj = {"event": "ok", "id": request_id, "request": kind}
            return obj | ({"room": room} if room else {}) | ({"user": user} if user else {})
        case ev.RequestFailed(request_id, kind, code, message, room, user):
            obj = {"event": "error", "id": request_id, "request": kind, "code": code}
            obj["message"] = message
            return obj | ({"room": room} if room else {}) | ({"user": user} if user else {})
        case ev.Disconnected(reason, delay) if delay is not None:
            return {"event": "disconnected", "reason": reason, "retry_in": round(delay, 1)}
        case ev.ConnectFailed(reason, delay) if delay is not None:
            return {"event": "connect_failed", "reason": reason, "retry_in": round(delay, 1)}
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
        case ev.RoomDelivered(msg_id, _, room):
            return [f"{now} > #{msg_id} sent to {room}"]
        case ev.RoomsState(rooms, invites):
            lines = []
            if rooms:
                listed = [f"{r.room} ({len(r.members)} members)" for r in rooms]
                lines.append(f"{now} * rooms: {', '.join(listed)}")
            lines += [f"{now} * {i.by} invited you to {i.room}" for i in invites]
            return lines
        case ev.RoomNotice(e):
            return [f"{stamp(e.ts)} * {room_event_text(e)}"]
        case ev.MarkersLoaded(markers):
            unread = [f"{k.peer} {k.unread}" for k in markers if k.unread]
            return [f"{now} * unread: {', '.join(unread)}"] if unread else []
        case ev.RequestDone(_, "join", room):
            return [f"{now} * joined {room}"]
        case ev.RequestDone(_, "room_create", room):
            return [f"{now} * created {room}"]
        case ev.RequestFailed(_, kind, code, message, room):
            what = f"{kind} {room}" if room else kind
            return [f"{now} ! {what}: {code or 'not sent'}: {message}"]
        case ev.Disconnected(reason, delay) if delay is not None:
            return [f"{now} * disconnected: {reason}; reconnecting in {math.ceil(delay)}s"]
        case ev.ConnectFailed(reason, delay) if delay is not None:
            return [f"{now} * {reason}; trying again in {math.ceil(delay)}s"]
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


def room_event_text(e: RoomEvent) -> str:
    """A room's event for people: `bob joined #dev`, `carol set the topic of #dev: ...`."""
    by = e.by or "someone"
    match e.event:
        case Kind.CREATED:
            return f"{e.user} created {e.room}"
        case Kind.JOINED:
            return f"{e.user} joined {e.room}"
        case Kind.LEFT:
            return f"{e.user} left {e.room}"
        case Kind.KICKED:
            return f"{by} kicked {e.user} from {e.room}"
        case Kind.INVITED:
            return f"{by} invited {e.user} to {e.room}"
        case Kind.TOPIC:
            return f"{by} set the topic of {e.room}: {printable(e.topic or '')}"
        case Kind.OWNER:
            return f"{e.user} owns {e.room} now"
        case Kind.DELETED:
            return f"{e.user} left {e.room}; it is deleted"
    return f"{e.event} {e.user} in {e.room}"


def fatal(message: str, code: int | None) -> str:
    """A failure said on stderr, as a JSON line of the `--json` stream (`exit`: the exit
    code it ends the run with; null when the run goes on)."""
    return json.dumps({"event": "fatal", "message": message, "exit": code}, ensure_ascii=False)


def local_error(line: int, message: str) -> str:
    """A line refused before it was sent, as a JSON line of the `--json` stream."""
    return json.dumps(
        {"event": "local_error", "line": line, "message": message}, ensure_ascii=False
    )


def message_line(msg: Msg, me: str, today: float | None = None) -> str:
    """One message as a human line (its own lines under the first, indented); `today` (a
    timestamp of today) is for tests."""
    away = "[offline] " if msg.offline else ""
    first, *more = msg.text.split("\n")
    text = "".join([printable(first), *(f"\n{' ' * TIME_WIDTH}{printable(m)}" for m in more)])
    return f"{stamp(msg.ts, today)} <{msg.sender}> {away}{_marker(msg, me)}{text}"


def stamp(ts: float, today: float | None = None) -> str:
    """The local time of `ts`, with its date first when it is not today."""
    when = time.localtime(ts)
    if when[:3] == time.localtime(time.time() if today is None else today)[:3]:
        return clock(ts)
    return f"{time.strftime('%Y-%m-%d', when)} {clock(ts)}"


def _marker(msg: Msg, me: str) -> str:
    if msg.to == BROADCAST:
        return ""
    if is_room(msg.to):
        return f"[{msg.to}] "
    names = list(msg.to)
    if msg.sender == me and len(names) == 1:  # our own, from the history
        return f"[private to {names[0]}] "
    if names == [me]:
        return "[private] "
    return f"[group: {', '.join(names)}] "
