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

    chat:{g}:presence       channel  a node's user came or went (sealed)
    chat:{g}:accounts       channel  a new account's blind name
    chat:{g}:gone           channel  a node was reaped (its id)
    chat:{g}:control        channel  an operator's kick, ban, delete or password reset,
                                     for every node to act on (sealed; moderation.py)
    chat:{n:<node>}:inbox   channel  messages for one node's users (sealed)

`<blind>` is a keyed blind index (box.Box.blind): no user name is in a key.
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

#: SCAN patterns of the keys the retention pass walks.
HISTORY_PATTERN = "chat:{c:*}:h"
QUEUE_PATTERN = "chat:{u:*}:q"


def node_users(node: str) -> str:
    return f"chat:{{n:{node}}}:users"


def node_inbox(node: str) -> str:
    return f"chat:{{n:{node}}}:inbox"


def conversation(blind: str) -> str:
    return f"chat:{{c:{blind}}}:h"


def queue(blind: str) -> str:
    return f"chat:{{u:{blind}}}:q"
