"""What `chat-server status` says, and the store's figures the metrics share.

Read when asked, never kept up to date on the chat path: the connections
and who is online come from the loop's and the hub's tables, the store's
figures from a read-only SQLite connection of its own (bounded to 2 s: a huge
store answers `null` rather than hold the operator), a cluster's from Redis.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chat.shared.version import VERSION

#: Seconds a count of the message store may take before it is given up.
COUNT_BUDGET = 2.0


def package_version() -> str:
    try:
        return importlib.metadata.version("chat-epoll")
    except importlib.metadata.PackageNotFoundError:  # a frozen binary without metadata
        return VERSION


def sqlite_counts(path: Path, budget: float = COUNT_BUDGET) -> tuple[int, int] | None:
    """(messages stored, offline entries) of a message store file, read-only; None when
    it cannot be read in `budget` seconds. A message to three people is kept in three
    conversations: it counts three times here, as it takes room three times."""
    deadline = time.monotonic() + budget
    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=budget)
    except sqlite3.Error:
        return None
    try:
        con.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        (stored,) = con.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()
        (queued,) = con.execute("SELECT count(*) FROM offline").fetchone()
        return int(stored), int(queued)
    except sqlite3.Error:
        return None
    finally:
        con.close()


def files_bytes(*paths: Path) -> int:
    """Bytes of the files that exist among `paths` (a message store: its -wal and -shm)."""
    total = 0
    for path in paths:
        for one in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(OSError):
                total += os.stat(one).st_size
    return total


def lines(facts: dict[str, Any]) -> list[str]:
    """`key: value` lines for a person; the numbers stay numbers (grep, awk)."""
    out = []
    for key, value in facts.items():
        shown = "n/a" if value is None else value
        if key == "uptime_seconds" and isinstance(value, int | float):
            shown = f"{int(value)} ({_span(value)})"
        elif key.endswith("_bytes") and isinstance(value, int):
            shown = f"{value} ({_size(value)})"
        out.append(f"{key.replace('_', ' ')}: {shown}")
    return out


def _span(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h", f"{minutes}m", f"{s}s"])


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
