"""Paging one view's history from the server, as plain data (no I/O, no screen).

A view shows the history of one or more conversations (`peers`: `"*"`, a
person, or each member of a group). Each peer is paged on its own, newest
page first, then `before` its oldest id. With several peers the pages are
merged by message id, and a message is released to the screen only when it
cannot be overtaken: below the oldest id of a peer that still has older
messages, another message of that peer could still belong in between. So
the screen only ever grows at its top (older pages) or bottom (newer), and
what the user looks at never shifts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.shared.messages import Msg, MsgId


@dataclass(slots=True)
class Cursor:
    """How far back one peer's history is known."""

    oldest: int | None = None  # the oldest id received from this peer's pages
    more: bool = True  # older messages than `oldest` exist
    loaded: bool = False  # at least one page (or a failure) came back


@dataclass(frozen=True, slots=True)
class Ask:
    """One request to make: `before` None is the newest page."""

    peer: str
    before: int | None


@dataclass
class Backlog:
    peers: tuple[str, ...]
    cursors: dict[str, Cursor] = field(default_factory=dict)
    #: Requests written and not answered yet: request id -> what was asked.
    pending: dict[MsgId, Ask] = field(default_factory=dict)
    #: Received but not released yet (another peer may still have messages between).
    held: dict[int, Msg] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for peer in self.peers:
            self.cursors.setdefault(peer, Cursor())

    # ------------------------------------------------------------- asking
    def latest(self) -> list[Ask]:
        """The newest page of every peer: at each login (a reconnect merges by id)."""
        return [Ask(peer, None) for peer in self.peers]

    def older(self) -> list[Ask]:
        """The pages that move the top of the view back; [] while waiting or at the start."""
        if self.pending or not all(c.loaded for c in self.cursors.values()):
            return []
        limit = self._boundary()
        return [
            Ask(peer, c.oldest)
            for peer, c in self.cursors.items()
            if c.more and c.oldest is not None and c.oldest == limit
        ]

    def asked(self, request_id: MsgId, ask: Ask) -> None:
        self.pending[request_id] = ask

    @property
    def loading_older(self) -> bool:
        return any(ask.before is not None for ask in self.pending.values())

    @property
    def complete(self) -> bool:
        """Every peer's history is on screen, down to its first message."""
        cursors = self.cursors.values()
        return all(c.loaded and not c.more for c in cursors) and not self.held

    def forget_pending(self) -> None:
        """The connection that would answer is gone for good (log out)."""
        self.pending.clear()

    # ---------------------------------------------------------- answering
    def answer(self, request_id: MsgId, messages: tuple[Msg, ...], more: bool) -> list[Msg] | None:
        """A page came back: the messages to show now, by id; None when it is not ours."""
        ask = self.pending.pop(request_id, None)
        if ask is None:
            return None
        cursor = self.cursors[ask.peer]
        cursor.loaded = True
        if messages:
            low = min(m.id for m in messages)
            if cursor.oldest is None or low < cursor.oldest:
                cursor.oldest, cursor.more = low, more
            elif not more:  # nothing before a page that reaches past our oldest
                cursor.more = False
        else:  # nothing (before `before`, or at all)
            cursor.more = False
        for m in messages:
            self.held[m.id] = m
        return self._release()

    def failed(self, request_id: MsgId) -> list[Msg] | None:
        """A request got no page: what that unblocks; None when it is not ours.

        In a group view a peer whose first page failed is not waited for (the
        others are shown); any other failed page can simply be asked again.
        """
        ask = self.pending.pop(request_id, None)
        if ask is None:
            return None
        cursor = self.cursors[ask.peer]
        if not cursor.loaded and len(self.peers) > 1:
            cursor.loaded, cursor.more = True, False
        return self._release()

    def _boundary(self) -> float:
        """Messages with an id at or above this are final on screen."""
        cursors = self.cursors.values()
        if not all(c.loaded for c in cursors):
            return float("inf")
        limits = [c.oldest for c in cursors if c.more and c.oldest is not None]
        return max(limits) if limits else float("-inf")

    def _release(self) -> list[Msg]:
        limit = self._boundary()
        ready = sorted(i for i in self.held if i >= limit)
        return [self.held.pop(i) for i in ready]
