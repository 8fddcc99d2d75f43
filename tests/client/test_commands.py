"""Commands on the TUI's message line: a `/` line is a command, never text; `@name text`."""

from __future__ import annotations

import pytest

from chat.client.commands import (
    Help,
    Query,
    Quit,
    SendText,
    SendTo,
    ShowAll,
    ShowHistory,
    Who,
    parse_command,
)


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
        ("//etc/hosts", SendText("/etc/hosts")),
        ("hello /history", SendText("hello /history")),
        ("/msg bob hello there", SendTo(("bob",), "hello there")),
        ("/msg bob,carol  hi", SendTo(("bob", "carol"), "hi")),
        ("/MSG bob hi", SendTo(("bob",), "hi")),
        ("@bob hi there", SendTo(("bob",), "hi there")),
        ("@bob,carol  hi", SendTo(("bob", "carol"), "hi")),
        ("@* everyone", SendTo("*", "everyone")),
        ("@@home", SendText("@home")),
        ("mail me @ home", SendText("mail me @ home")),
        ("/query bob", Query(("bob",))),
        ("/query bob, carol", Query(("bob", "carol"))),
        ("/query", Query(None)),
        ("/query *", Query(None)),
        ("/who", Who()),
        ("/help", Help()),
        ("/quit", Quit()),
        ("/exit", Quit()),
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
        ("/msg bob,,carol hi", "not a valid user name: ''"),
        ("/msg * hi", "for people"),
        ("/me waves", "unknown command /me"),
        ("/historybob", "unknown command /historybob"),
        ("/frobnicate now", r"unknown command /frobnicate \(/help lists the commands\)"),
        ("/", "starts with / is a command"),
        ("/ hello", "starts with / is a command"),
        ("/who bob", "takes nothing"),
        ("@bob", "nothing to send after @bob"),
        ("@bob   ", "nothing to send"),
        ("@ hi", "@NAME text"),
        ("@bob,,carol hi", "not a valid user name"),
        ("@bad! hi", "not a valid user name"),
    ],
)
def test_bad_commands_say_why(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_command(line)
