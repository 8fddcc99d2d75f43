"""Every Redis key and channel of the cluster: built here, and nowhere else.

Each name carries a hash tag (the part in braces), so that what one operation
touches lives in one slot of a Redis Cluster (issue "6 of 6" shards over it):

    chat:{g}:users          HASH   blind name -> sealed account            (accounts.py)
    chat:{g}:folded         HASH   blind lower-case name -> blind name     (accounts.py)
    chat:{g}:banned         HASH   blind name -> "1", accounts that may not log in (accounts.py)
    chat:{g}:invites        HASH   blind code -> "uses expiry" (`invite create`; accounts.py)
    chat:{g}:check          STRING the key check of the key file           (presence.py)
    chat:{g}:ids            INT    INCRBY: blocks of message ids           (messages.py)
    chat:{g}:nodes          ZSET   node -> expiry of its heartbeat         (presence.py)
    chat:{g}:purge          STRING the retention pass's lock               (messages.py)
    chat:{n:<node>}:users   HASH   blind name -> sealed name, one node's users
    chat:{c:<blind>}:h      ZSET   one conversation's history (id -> sealed message)
    chat:{u:<blind>}:q      ZSET   one user's offline queue (id -> sealed message)
    chat:{u:<blind>}:markers   HASH   conversation key -> sealed (peer, upto): read markers
    chat:{u:<blind>}:contacts  HASH   blind partner -> sealed name: who the user wrote with
    chat:{u:<blind>}:deleted   STRING sealed time an account of the name was deleted
    chat:{g}:rooms          SET    the blind key of every room name ever used (rooms.py)
    chat:{r:<blind>}:room   STRING a room's sealed record and version (or a tombstone)
    chat:{r:<blind>}:h      ZSET   a room's history (id -> sealed message)

    chat:{g}:presence       channel  a node's user came or went (sealed)
    chat:{g}:accounts       channel  a new account's blind name
    chat:{g}:gone           channel  a node was reaped (its id)
    chat:{g}:control        channel  an operator's kick, ban, delete or password reset,
                                     for every node to act on (sealed; moderation.py)
    chat:{n:<node>}:inbox   channel  messages for one node's users (sealed)
    chat:{g}:rooms          channel  room changes and room messages, one order (sealed)

`<blind>` is a keyed blind index (box.Box.blind): no user or room name is in a
key. A user's keys share the blind of its queue (one slot per user); a room's
record and history share the blind of its folded name (one slot per room), so
the transaction that changes a room (cluster/rooms.py) stays in one slot; the
index of rooms is written apart from it (it only ever grows: a deleted room
leaves a tombstone record, so its version goes on if the name is used again).
Scripts name every key they touch in KEYS (a key built inside a script is not
routed by a Redis Cluster, which refuses it); none spans two hash tags.
"""

from __future__ import annotations

GLOBAL = "chat:{g}:"

USERS = GLOBAL + "users"
FOLDED = GLOBAL + "folded"
BANNED = GLOBAL + "banned"
INVITES = GLOBAL + "invites"
CHECK = GLOBAL + "check"
IDS = GLOBAL + "ids"
NODES = GLOBAL + "nodes"
PURGE_LOCK = GLOBAL + "purge"
PRESENCE = GLOBAL + "presence"
ACCOUNTS = GLOBAL + "accounts"
GONE = GLOBAL + "gone"
CONTROL = GLOBAL + "control"
ROOMS = GLOBAL + "rooms"

#: SCAN patterns of the keys the retention pass walks.
HISTORY_PATTERN = "chat:{c:*}:h"
QUEUE_PATTERN = "chat:{u:*}:q"
ROOM_HISTORY_PATTERN = "chat:{r:*}:h"


def node_users(node: str) -> str:
    return f"chat:{{n:{node}}}:users"


def node_inbox(node: str) -> str:
    return f"chat:{{n:{node}}}:inbox"


def conversation(blind: str) -> str:
    return f"chat:{{c:{blind}}}:h"


def queue(blind: str) -> str:
    return f"chat:{{u:{blind}}}:q"


def markers(blind: str) -> str:
    """One user's read markers (`blind`: the user's queue blind, one slot per user)."""
    return f"chat:{{u:{blind}}}:markers"


def contacts(blind: str) -> str:
    return f"chat:{{u:{blind}}}:contacts"


def deleted(blind: str) -> str:
    """When an account of the name was deleted: a newcomer's private history starts after."""
    return f"chat:{{u:{blind}}}:deleted"


def room(blind: str) -> str:
    """A room's record (`blind`: of the room's folded name)."""
    return f"chat:{{r:{blind}}}:room"


def room_history(blind: str) -> str:
    return f"chat:{{r:{blind}}}:h"


def room_channel(blind: str) -> str:
    """The channel of a room's changes and messages: one for every room for now (one
    Redis: one total order); issue "6 of 6" shards it per room with sharded pub/sub."""
    return ROOMS
