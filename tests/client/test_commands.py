"""Commands on the TUI's message line: only `/history` and `/all`; everything else is text."""

from __future__ import annotations

import pytest

from chat.client.commands import SendText, SendTo, ShowAll, ShowHistory, parse_command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/history", ShowHistory(None)),
        ("  /history  ", ShowHistory(None)),
        ("/history bob", ShowHistory(("bob",))),
        ("/history bob,carol", ShowHistory(("bob", "carol"))),
        ("/history bob carol, bob", ShowHistory(("bob", "carol"))),
        ("/history *", ShowAll()),
        ("/all", ShowAll()),
        ("//history", SendText("/history")),
        ("/historybob", SendText("/historybob")),
        ("/me waves", SendText("/me waves")),
        ("hello /history", SendText("hello /history")),
        ("/msg bob hello there", SendTo(("bob",), "hello there")),
        ("/msg bob,carol  hi", SendTo(("bob", "carol"), "hi")),
    ],
)
def test_what_a_line_means(line: str, command: object) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("/history bad!name", "not a valid user name"),
        ("/all bob", "nothing after it"),
        ("/msg bob", "NAME"),
        ("/msg", "NAME"),
        ("/msg bob,,x! hi", "not a valid user name"),
        ("/msg * hi", "for people"),
    ],
)
def test_bad_commands_say_why(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_command(line)
