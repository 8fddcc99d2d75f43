"""What the docs, `--help` and the sample config say about the server agrees with the code.

`--max-frame` had three numbers in three places (the README and the sample
config said "at least 3167", `--help` 41, the server took 100); `--help`
printed `--no-history ... (default: True)`. The numbers here are read from
the code (`cli.min_max_frame`, `cli.full_auth_frame`) and looked for in each
text, and the server is held to the minimum `--help` states.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat.server.ops.cli import build_parser, full_auth_frame, min_max_frame

ROOT = Path(__file__).parents[2]
SERVER = [sys.executable, "-m", "chat.server"]


def _help() -> str:
    """`chat-server --help` from the real program, one line per option (a wide terminal)."""
    env = {**os.environ, "COLUMNS": "1000"}
    result = subprocess.run(
        [*SERVER, "--help"], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _line(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def _minimum(line: str) -> int:
    found = re.findall(r"at least (\d+)", line)
    assert len(found) == 1, line
    return int(found[0])


def _numbers(line: str) -> set[int]:
    return {int(n) for n in re.findall(r"\b\d+\b", line)} - {65536}  # the default


# --------------------------------------------------------------------------
# --max-frame: one minimum, everywhere
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("--help", "  --max-frame BYTES"),
        ("README.md", "| `--max-frame` |"),
        ("packaging/chat-server.toml.example", "# max-frame = "),
    ],
)
def test_every_text_states_the_code_s_minimum_and_full_size(where: str, needle: str) -> None:
    text = _help() if where == "--help" else (ROOT / where).read_text(encoding="utf-8")
    line = _line(text, needle)
    assert _minimum(line) == min_max_frame(), line
    assert _numbers(line) == {min_max_frame(), full_auth_frame()}, line


def test_the_operators_manual_states_both_numbers() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert re.findall(r"Below \*\*(\d+)\*\*", text) == [
        str(min_max_frame()),
        str(full_auth_frame()),
    ]


def test_the_server_refuses_below_the_minimum_help_states_and_starts_at_it(
    start_server, tmp_path: Path
) -> None:
    stated = _minimum(_line(_help(), "  --max-frame BYTES"))
    below = subprocess.run(
        [*SERVER, "--port", "0", "--max-frame", str(stated - 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert below.returncode == 2, below
    assert f"is below {stated}" in below.stderr
    assert list(tmp_path.iterdir()) == []
    server = start_server("--max-frame", str(stated))  # the minimum itself is taken
    assert f"max_frame={stated}," in server.log()


# --------------------------------------------------------------------------
# --help and flags
# --------------------------------------------------------------------------
def test_no_flag_s_help_shows_a_true_or_false_default() -> None:
    """`--no-history ... (default: True)` read as "no history by default"."""
    text = _help()
    assert "(default: True)" not in text and "(default: False)" not in text
    flags = [
        a.option_strings[0]
        for a in build_parser()._actions
        if a.nargs == 0 and a.option_strings[0] not in ("-h", "--version")
    ]
    assert "--no-history" in flags and "--refuse-case-variants" in flags
    for flag in flags:
        assert re.search(rf"^  {re.escape(flag)}\b", text, re.M), flag


def test_help_still_shows_the_defaults_of_options_with_values() -> None:
    text = _help()
    assert "(default: 65536)" in _line(text, "  --max-frame BYTES")
    assert "(default: 1)" in _line(text, "  --min-password N")
