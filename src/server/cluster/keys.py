"""Every Redis key and channel of the cluster: built here, and nowhere else.

Each name carries a hash tag (the part in braces), so that what one operation
touches lives in one slot of a Redis Cluster (docs/cluster.md, "Redis Cluster"):

    chat:{g}:users          HASH   blind name -> sealed account            (accounts.py)
    chat:{g}:folded         HASH   blind lower-case name -> blind name     (accounts.py)
    chat:{g}:banned         HASH   blind name -> "1", accounts that may not log in (accounts.py)
    chat:{g}:invites        HASH   blind code -> "uses expiry" (`invite create`; accounts.py)
    chat:{g}:check          STRING the key check of the key file           (presence.py)
    chat:{g}:ids            INT    INCRBY: blocks of message ids           (messages.py)
    chat:{g}:nodes          ZSET   node -> expiry of its heartbeat         (presence.py)
    chat:{g}:purge          STRING the retention pass's lock               (messages.py)
    chat:{g}:rooms          SET    the blind key of every room name ever used (rooms.py)
    chat:{n:<node>}:users   HASH   blind name -> sealed name, one node's users
    chat:{c:<blind>}:h      ZSET   one conversation's history (id -> sealed message)
    chat:{u:<blind>}:q      ZSET   one user's offline queue (id -> sealed message)
    chat:{u:<blind>}:markers   HASH   conversation key -> sealed (peer, upto): read markers
    chat:{u:<blind>}:contacts  HASH   blind partner -> sealed name: who the user wrote with
    chat:{u:<blind>}:deleted   STRING sealed time an account of the name was deleted
    chat:{t:<blind>}:turns  HASH   an account's failed logins and next check, every node's
    chat:{t:<blind>}:waiting  ZSET node -> when it first asked for the account's next turn
                                   (turns.py; both gone once the failures have decayed)
    chat:{r:<k>}:room:<blind>  STRING a room's sealed record and version (or a tombstone)
    chat:{r:<k>}:h:<blind>     ZSET   a room's history (id -> sealed message)

    chat:{g}:presence       channel  a node's user came or went (sealed)
    chat:{g}:accounts       channel  a new account's blind name
    chat:{g}:gone           channel  a node was reaped (its id)
    chat:{g}:turns          channel  an account's login failed: its blind and score (turns.py)
    chat:{g}:control        log      an operator's kick, ban, delete or password reset,
                                     for every node to act on (sealed; moderation.py)
    chat:{n:<node>}:inbox   log      messages for one node's users (sealed; broker.py)
    chat:{r:<k>}:ch         log      the changes and messages of the rooms of shard k,
                                     one order (sealed; rooms.py)

A *log* (cluster/bus.py) is a channel with two keys beside it, in its slot:
`<channel>:log` (STREAM, its last messages by number) and `<channel>:state` (HASH:
the last number; the numbers of messages nobody took yet, or given up). In a Redis
Cluster every channel is a sharded one (SPUBLISH/SSUBSCRIBE), served by the node of
its slot; on one Redis a classic one.

`<blind>` is a keyed blind index (box.Box.blind): no user or room name is in a
key. A user's keys share the blind of its queue (one slot per user). Rooms are
spread over `ROOM_SHARDS` shards by their blind: a room's record, history and log
share the shard's tag, so the transaction that changes a room (cluster/rooms.py:
WATCH the record, MULTI, the record, the history, the log's message, EXEC) stays in
one slot, and every node subscribes to a fixed set of channels (a new room needs no
new subscription). The index of rooms is written apart from it (it only ever grows:
a deleted room leaves a tombstone record, so its version goes on if the name is used
again). Scripts name every key they touch in KEYS (a key built inside a script is
not routed by a Redis Cluster, which refuses it); none spans two hash tags.
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
TURNS = GLOBAL + "turns"
ROOMS = GLOBAL + "rooms"

#: Shards of the rooms: a fixed number, part of the key layout (changing it moves every
#: room). 256 spread over any number of Redis Cluster masters up to a few dozen within
#: 2:1 (87 / 90 / 79 over three equal masters), and cost every node 256 subscriptions.
ROOM_SHARDS = 256

#: SCAN patterns of the keys the retention pass walks.
HISTORY_PATTERN = "chat:{c:*}:h"
QUEUE_PATTERN = "chat:{u:*}:q"
ROOM_HISTORY_PATTERN = "chat:{r:*}:h:*"


def node_users(node: str) -> str:
    return f"chat:{{n:{node}}}:users"


def node_inbox(node: str) -> str:
    """A node's inbox: a log (`log_keys`) in the node's slot."""
    return f"chat:{{n:{node}}}:inbox"


def log_keys(channel: str) -> tuple[str, str]:
    """A log's stream and state hash (cluster/bus.py), in its channel's slot."""
    return f"{channel}:log", f"{channel}:state"


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


def login_turns(blind: str) -> tuple[str, str]:
    """An account's failed-login turns and the nodes waiting for one (`blind`: of the
    account's name), a slot of their own: a guesser's many names spread over the masters."""
    return f"chat:{{t:{blind}}}:turns", f"chat:{{t:{blind}}}:waiting"


def room_shard(blind: str) -> int:
    """The shard of a room (`blind`: of the room's folded name)."""
    return int(blind[:8], 16) % ROOM_SHARDS


def room(blind: str) -> str:
    """A room's record (`blind`: of the room's folded name)."""
    return f"chat:{{r:{room_shard(blind)}}}:room:{blind}"


def room_history(blind: str) -> str:
    return f"chat:{{r:{room_shard(blind)}}}:h:{blind}"


def room_channel(blind: str) -> str:
    """The log of a room's changes and messages: its shard's (one order per shard, so one
    per room)."""
    return shard_channel(room_shard(blind))


def shard_channel(shard: int) -> str:
    return f"chat:{{r:{shard}}}:ch"


def room_channels() -> list[str]:
    """Every room shard's log, the channels every node listens to."""
    return [shard_channel(k) for k in range(ROOM_SHARDS)]
