"""Damage an SQLite file the way a failing disk would: whole pages of garbage.

Pages are found from the file format itself (sqlite.org/fileformat.html), not
through SQLite, so a test can damage a file that a running server holds open
without opening it: the root pages are read from a private copy.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path


def page_size(path: Path) -> int:
    with open(path, "rb") as f:
        size = struct.unpack(">H", f.read(100)[16:18])[0]
    return 65536 if size == 1 else size


def roots(path: Path) -> dict[str, int]:
    """The root page of each table and index, read from a copy of the main file."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(path, copy)
        conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
        try:
            rows = conn.execute("SELECT name, rootpage FROM sqlite_schema WHERE rootpage > 0")
            return dict(rows)
        finally:
            conn.close()


def leaves(path: Path, root: int) -> list[int]:
    """The leaf pages of the b-tree at `root`, in page order."""
    data = path.read_bytes()
    size = page_size(path)
    found, todo = [], [root]
    while todo:
        number = todo.pop()
        page = data[(number - 1) * size : number * size]
        head = 100 if number == 1 else 0
        kind, cells = page[head], struct.unpack(">H", page[head + 3 : head + 5])[0]
        if kind in (0x0A, 0x0D):  # index leaf, table leaf
            found.append(number)
            continue
        assert kind in (0x02, 0x05), f"page {number} is not a b-tree page"
        for (at,) in struct.iter_unpack(">H", page[head + 12 : head + 12 + 2 * cells]):
            todo.append(struct.unpack(">I", page[at : at + 4])[0])  # left child of a cell
        todo.append(struct.unpack(">I", page[head + 8 : head + 12])[0])  # right-most child
    return sorted(found)


def garbage(path: Path, pages: list[int], seed: int) -> None:
    """Overwrite whole pages with random bytes (written straight to the file)."""
    rng = random.Random(seed)
    size = page_size(path)
    with open(path, "r+b") as f:
        for number in pages:
            f.seek((number - 1) * size)
            f.write(rng.randbytes(size))
