"""An epoll selector whose `max_events` and millisecond timeout really reach epoll_wait.

The stock `selectors.EpollSelector` asks epoll for as many events as it has
file descriptors and takes its timeout in seconds. This one wraps
`select.epoll` behind the `selectors.BaseSelector` interface with both knobs
fixed at construction, allows a registration with no events (a paused
reader with nothing to write: epoll still reports hang-ups for it), and logs
every wait at DEBUG with its events by name, so the log shows the loop at work.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("chat.server.epoll")

_EPOLL_NAMES = [
    (select.EPOLLIN, "EPOLLIN"),
    (select.EPOLLPRI, "EPOLLPRI"),
    (select.EPOLLOUT, "EPOLLOUT"),
    (select.EPOLLERR, "EPOLLERR"),
    (select.EPOLLHUP, "EPOLLHUP"),
    (select.EPOLLRDHUP, "EPOLLRDHUP"),
]


def epoll_names(mask: int) -> str:
    """`EPOLLIN|EPOLLHUP` for a raw epoll mask."""
    names = [name for bit, name in _EPOLL_NAMES if mask & bit]
    return "|".join(names) or "0"


def _to_epoll(events: int) -> int:
    mask = 0
    if events & selectors.EVENT_READ:
        mask |= select.EPOLLIN
    if events & selectors.EVENT_WRITE:
        mask |= select.EPOLLOUT
    return mask


def _from_epoll(mask: int) -> int:
    """selectors events for a raw mask; errors and hang-ups wake readers and writers."""
    events = 0
    if mask & (select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP):
        events |= selectors.EVENT_READ
    if mask & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
        events |= selectors.EVENT_WRITE
    return events


#: The bits `_from_epoll` looks at, and its answer for each combination of them: `select`
#: looks the events of a mask up here instead of calling it once per ready descriptor.
_EVENT_BITS = select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
_EVENTS = [_from_epoll(mask) for mask in range(_EVENT_BITS + 1)]


class _KeyMap(Mapping[Any, selectors.SelectorKey]):
    def __init__(self, keys: dict[int, selectors.SelectorKey]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys[selectors._fileobj_to_fd(fileobj)]  # type: ignore[attr-defined]


class TunedEpollSelector(selectors.BaseSelector):
    """`select()` waits at most `timeout_ms` and returns at most `max_events` events.

    `register`/`modify` may be called from other threads while the loop waits
    (epoll_ctl is thread-safe and the key table is a dict read by fd); the
    caller serialises changes to one fd (the server does so under that
    connection's send lock).
    """

    def __init__(self, max_events: int = 64, timeout_ms: int = 1000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.timeout_ms = timeout_ms
        self._epoll = select.epoll()
        self._keys: dict[int, selectors.SelectorKey] = {}
        #: Raw masks of the last wait, by fd (for callers that want HUP/ERR detail).
        self.last_masks: dict[int, int] = {}

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        if fd in self._keys:
            raise KeyError(f"fd {fd} is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._epoll.register(fd, _to_epoll(events))
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        key = self._keys.pop(fd)
        with contextlib.suppress(OSError):  # already closed: the kernel dropped it
            self._epoll.unregister(fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        old = self._keys[fd]
        if old.events != events:
            self._epoll.modify(fd, _to_epoll(events))
        key = old._replace(events=events, data=data if data is not None else old.data)
        self._keys[fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait; `timeout` (seconds) overrides the configured wait when given."""
        wait_s = self.timeout_ms / 1000.0 if timeout is None else max(timeout, 0.0)
        if self.timeout_ms < 0 and timeout is None:
            wait_s = -1
        try:
            ready = self._epoll.poll(wait_s, self.max_events)
        except InterruptedError:
            ready = []
        masks = self.last_masks
        masks.clear()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "epoll_wait(maxevents=%d, timeout=%dms) -> %d events",
                self.max_events,
                int(wait_s * 1000),
                len(ready),
            )
            for fd, mask in ready:
                log.debug("  fd=%d %s", fd, epoll_names(mask))
        out = []
        keys, events = self._keys, _EVENTS
        for fd, mask in ready:
            key = keys.get(fd)
            if key is not None:
                masks[fd] = mask
                out.append((key, events[mask & _EVENT_BITS]))
        return out

    def close(self) -> None:
        self._keys.clear()
        self._epoll.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _KeyMap(self._keys)
