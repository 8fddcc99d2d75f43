"""docs/client.md lists every key and command, as `/help` prints them: one table in the code
(`commands.COMMANDS`, `commands.KEYS`), and the page holds each of its rows."""

from __future__ import annotations

from pathlib import Path

from chat.client.commands import COMMANDS, KEYS, help_lines

DOCS = Path(__file__).parents[2] / "docs" / "client.md"


def _cells(line: str) -> list[str]:
    """A markdown table row's cells, `\\|` unescaped and backticks dropped."""
    cells = line.strip().strip("|").replace("\\|", "\0").split("|")
    return [c.strip().replace("\0", "|").strip("`") for c in cells]


def _rows() -> list[list[str]]:
    return [
        _cells(line)
        for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith("| ")
    ]


def test_the_page_has_every_command_of_help_with_its_meaning() -> None:
    rows = _rows()
    for usage, meaning in COMMANDS:
        assert [usage, meaning] in rows, usage


def test_the_page_has_every_key_of_help_with_what_it_does() -> None:
    rows = _rows()
    for where, key, does in KEYS:
        assert [where, key, does] in rows, key


def test_help_prints_exactly_those_tables() -> None:
    lines = help_lines()
    assert len(lines) == len(COMMANDS) + len(KEYS) + 2  # and the two headings
