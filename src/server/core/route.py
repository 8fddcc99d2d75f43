"""The one route: who a `send` reaches, and what its `sent` says.

Everything the contract says about a send's outcome is decided here, in two
plain functions over data (no lock, no I/O, no callback):

- `plan` (for a list of names) and `plan_everyone` (for `"*"`), given the
  sender, the recipients and a snapshot of who is where (this node's
  sessions, the other nodes' users, which names have an account), say which
  local slots get the message, which other nodes get it, and what `sent`
  would say if every part of that worked: `delivered`, `missing`, `queued`.
- `settle`, given what then happened (the store made the queued copies
  durable or not, which other nodes took it, which local recipients' slots
  refused it), gives the final `delivered`/`missing`/`queued`: a name is
  `delivered` only if some session of it really got the message (protocol
  v1.1 section 6: "delivered never lies"), and a recipient who was lost on
  the way is `missing`, and `queued` once a copy is durably kept for it.

The hub takes the snapshot under its lock and calls `plan` there (it is pure
and cheap), then hands the messages to the store's queue in the same critical
section: that is what lets a login's catch-up see every message that found
its user offline (docs/server.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from chat.server.core import native
from chat.shared.messages import BROADCAST, Recipients, encode_names


class Targets:
    """This node's slots one message goes to: handles for one native fan-out, and the
    user behind each handle (to tell who a refused append leaves without the message).

    `exclude` is the tag of the sender's user: a message to everyone skips the sender's
    own sessions in the library, so one cached array of every session serves every sender.
    `reach` is how many slots take the message when every append works (`count` less the
    sender's sessions): a fan-out that reached that many missed nobody, without a look at
    which ones failed.
    """

    __slots__ = ("count", "exclude", "handles", "reach", "users")

    def __init__(
        self,
        handles: Any,
        count: int,
        exclude: int,
        users: tuple[str, ...],
        reach: int | None = None,
    ) -> None:
        self.handles = handles
        self.count = count
        self.exclude = exclude
        self.users = users
        self.reach = count if reach is None else reach

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, int]], exclude: int = 0) -> Targets:
        """Targets for (user, slot handle) pairs."""
        if not pairs:
            return NOBODY
        handles = native.ffi.new("uint64_t[]", [h for _, h in pairs])
        return cls(handles, len(pairs), exclude, tuple(n for n, _ in pairs))

    def but(self, exclude: int, skipped: int = 0) -> Targets:
        """The same slots (a snapshot array) with another excluded tag, which `skipped` of
        them carry (0 when not known: a fan-out that misses some then looks at which)."""
        return Targets(self.handles, self.count, exclude, self.users, self.count - skipped)


NOBODY = Targets(native.NULL, 0, 0, ())
_EMPTY_JSON = encode_names(())


class Plan(msgspec.Struct, frozen=True):
    """Where one send goes, and what its `sent` says if everything works. A frozen
    msgspec Struct: made for every group of sends, where a frozen dataclass's __init__
    (one `object.__setattr__` per field) cost about a microsecond."""

    to: Recipients
    targets: Targets  # this node's slots
    delivered: tuple[str, ...]
    #: `delivered` for the `sent` frames: for "*" encoded once per roster change (the
    #: frame's bulk); for a list, the names themselves (encoded with the frames).
    delivered_json: bytes | tuple[str, ...]
    missing: tuple[str, ...]
    #: Registered recipients with no session anywhere: the store keeps a copy for each,
    #: durably, before `sent` may name them (protocol v1.1 section 3).
    queued: tuple[str, ...]
    #: Who the store files the messages under: the conversation of the sender with each
    #: of these (v1.1 section 4); () for "*", which has a conversation of its own.
    named: tuple[str, ...]
    #: Every other node with a recipient: (node, the names there, or None for everyone).
    nodes: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    #: For a list of names: each recipient with sessions on other nodes, and those nodes.
    elsewhere: Mapping[str, tuple[str, ...]] | None = None
    #: The messages go to the history: everyone's, or a conversation with a recipient.
    stores: bool = True


class Verdict(msgspec.Struct, frozen=True):
    """The final `sent` fields of a group of sends, or what must happen before them."""

    delivered_json: bytes | tuple[str, ...]
    missing: tuple[str, ...]
    queued: tuple[str, ...]
    #: Recipients lost on the way who have an account: the message must be stored for
    #: them (durably) before `sent` may call them queued; `stored_more` says how it went.
    store_more: tuple[str, ...] = ()


def plan_everyone(
    sender: str,
    targets: Targets,
    others: tuple[str, ...],
    others_json: bytes,
    nodes: Iterable[str],
) -> Plan:
    """`"*"`: every other user online anywhere; nothing is queued (v1.1 section 3).

    `targets` are this node's sessions (the sender's excluded by tag), `others` every
    visible name but the sender's, `nodes` the other nodes that have users.
    """
    return Plan(
        BROADCAST,
        targets,
        others,
        others_json,
        (),
        (),
        (),
        tuple((node, None) for node in nodes),
    )


def plan(
    sender: str,
    to: tuple[str, ...],
    local: Mapping[str, Sequence[int]],
    elsewhere: Mapping[str, tuple[str, ...]],
    registered: frozenset[str],
) -> Plan:
    """A list of names: each once, in the order given, the sender's own name ignored.

    `local` maps a name to this node's slot handles of its sessions in CHAT,
    `elsewhere` to the other nodes where it has one; `registered` holds the names
    with an account when the server keeps messages (empty when it keeps none).
    """
    delivered: list[str] = []
    missing: list[str] = []
    queued: list[str] = []
    pairs: list[tuple[str, int]] = []
    by_node: dict[str, list[str]] = {}
    remote: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys(to):
        if name == sender:
            continue
        handles = local.get(name, ())
        nodes = elsewhere.get(name, ())
        if handles or nodes:
            delivered.append(name)
            pairs.extend((name, h) for h in handles)
            if nodes:
                remote[name] = nodes
                for node in nodes:
                    by_node.setdefault(node, []).append(name)
        else:
            missing.append(name)
            if name in registered:
                queued.append(name)
    names = tuple(delivered)
    return Plan(
        to,
        Targets.of(pairs),
        names,
        names,
        tuple(missing),
        tuple(queued),
        (*delivered, *queued),
        tuple((node, tuple(names)) for node, names in by_node.items()),
        remote or None,
        bool(delivered or queued),
    )


def settle(
    plan: Plan,
    *,
    stored: bool,
    reached: frozenset[str] | None = None,
    missed: frozenset[str] = frozenset(),
    everyone_elsewhere: Mapping[str, tuple[str, ...]] | None = None,
    registered: frozenset[str] = frozenset(),
) -> Verdict:
    """The `sent` fields once the results are in.

    `stored`: the store made the queued copies durable (False: it could not, or did
    not answer in time). `reached`: the other nodes that took the message (None:
    every node of the plan did). `missed`: local recipients none of whose slots took
    it (gone, overflowed, out of memory). `everyone_elsewhere`: for "*", every name
    with sessions on other nodes and those nodes (a list of names carries that in the
    plan); needed only when a node was not reached. `registered`: which recipients
    have an account, for those lost on the way.
    """
    queued = plan.queued if stored else ()
    unreached = reached is not None and any(node not in reached for node, _ in plan.nodes)
    if not missed and not unreached:
        return Verdict(plan.delivered_json, plan.missing, queued)
    elsewhere = (plan.elsewhere if plan.to != BROADCAST else everyone_elsewhere) or {}
    here = set(plan.targets.users) - missed

    def got_it(name: str) -> bool:
        if name in here:
            return True
        nodes = elsewhere.get(name, ())
        return any(node in reached for node in nodes) if reached is not None else bool(nodes)

    lost = [n for n in plan.delivered if not got_it(n)]
    if not lost:
        return Verdict(plan.delivered_json, plan.missing, queued)
    gone = set(lost)
    delivered = [n for n in plan.delivered if n not in gone]
    more = () if plan.to == BROADCAST else tuple(n for n in lost if n in registered)
    return Verdict(encode_names(delivered), plan.missing + tuple(lost), queued, more)


def stored_more(verdict: Verdict, ok: bool) -> Verdict:
    """The copies for the recipients lost on the way were made durable (`ok`) or not."""
    queued = verdict.queued + verdict.store_more if ok else verdict.queued
    return Verdict(verdict.delivered_json, verdict.missing, queued)


EVERYONE_NOWHERE = Verdict(_EMPTY_JSON, (), ())
