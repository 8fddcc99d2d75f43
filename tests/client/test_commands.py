"""Commands on the TUI's message line: a `/` line is a command, never text; `@name text`;
the one list of commands and keys that /help prints."""

from __future__ import annotations

import pytest

from chat.client.commands import (
    COMMAND_WORDS,
    COMMANDS,
    KEYS,
    Invite,
    Join,
    Kick,
    Part,
    Query,
    Search,
    SendText,
    SendTo,
    ShowBuffer,
    Simple,
    Topic,
    Whois,
    help_lines,
    parse_command,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/history", Query(None)),  # v1.1's command: now the buffer of that conversation
        ("  /history  ", Query(None)),
        ("/history bob", Query(("bob",))),
        ("/history bob,carol", Query(("bob", "carol"))),
        ("/history bob carol, bob", Query(("bob", "carol"))),
        ("/history *", Query(None)),
        ("/all", ShowBuffer("1")),
        ("//history", SendText("/history")),
        ("//etc/hosts", SendText("/etc/hosts")),
        ("hello /history", SendText("hello /history")),
        ("/msg bob hello there", SendTo(("bob",), "hello there")),
        ("/msg bob,carol  hi", SendTo(("bob", "carol"), "hi")),
        ("/MSG bob hi", SendTo(("bob",), "hi")),
        ("/msg #dev hi room", SendTo("#dev", "hi room")),
        ("@bob hi there", SendTo(("bob",), "hi there")),
        ("@bob,carol  hi", SendTo(("bob", "carol"), "hi")),
        ("@#dev standup", SendTo("#dev", "standup")),
        ("@* everyone", SendTo("*", "everyone")),
        ("@@home", SendText("@home")),
        ("mail me @ home", SendText("mail me @ home")),
        ("/query bob", Query(("bob",))),
        ("/query bob, carol", Query(("bob", "carol"))),
        ("/q bob", Query(("bob",))),
        ("/query", Query(None)),
        ("/query *", Query(None)),
        ("/buffer 3", ShowBuffer("3")),
        ("/buffer #dev", ShowBuffer("#dev")),
        ("/join #dev", Join("#dev")),
        ("/join dev", Join("#dev")),  # the # is added, as IRC clients do
        ("/j #Dev", Join("#Dev")),
        ("/part", Part(None)),
        ("/part #dev", Part("#dev")),
        ("/leave #dev", Part("#dev")),
        ("/invite bob", Invite("bob", None)),
        ("/invite bob #dev", Invite("bob", "#dev")),
        ("/kick bob #dev", Kick("bob", "#dev")),
        ("/topic ship it today", Topic("ship it today")),
        ("/topic", Topic(None)),
        ("/whois bob", Whois("bob")),
        ("/me waves", SendText("/me waves")),  # the action convention: see actions.py
        ("/search lunch place", Search("lunch place")),
        ("/who", Simple("who")),
        ("/names", Simple("names")),
        ("/rooms", Simple("rooms")),
        ("/list", Simple("rooms")),
        ("/close", Simple("close")),
        ("/clear", Simple("clear")),
        ("/filter", Simple("filter")),
        ("/help", Simple("help")),
        ("/quit", Simple("quit")),
        ("/exit", Simple("quit")),
        ("line one\nline two", SendText("line one\nline two")),
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
        ("/msg * hi", "for people and rooms"),
        ("/msg #bad! hi", "not a valid room name"),
        ("/me", r"/me text"),
        ("/historybob", "unknown command /historybob"),
        ("/frobnicate now", r"unknown command /frobnicate \(/help lists the commands\)"),
        ("/", "starts with / is a command"),
        ("/ hello", "starts with / is a command"),
        ("/who bob", "takes nothing"),
        ("/join", r"/join #room"),
        ("/join #a b", "not a valid room name"),
        ("/invite", r"/invite NAME \[#room\]"),
        ("/kick bob #dev extra", r"/kick NAME \[#room\]"),
        ("/whois", "/whois NAME"),
        ("/whois bad!", "not a valid user name"),
        ("/search", "/search text"),
        ("/buffer", r"/buffer NAME\|N"),
        ("@bob", "nothing to send after @bob"),
        ("@bob   ", "nothing to send"),
        ("@ hi", "@NAME text"),
        ("@bob,,carol hi", "not a valid user name"),
        ("@bad! hi", "not a valid user name"),
        ("@#bad! hi", "not a valid room name"),
    ],
)
def test_bad_commands_say_why(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_command(line)


def test_help_prints_every_command_and_key_from_the_one_table() -> None:
    lines = help_lines()
    for usage, meaning in COMMANDS:
        assert f"{usage} -- {meaning}" in lines
    for where, key, does in KEYS:
        assert f"{where}: {key} -- {does}" in lines


def test_every_command_word_is_one_that_runs() -> None:
    for word in COMMAND_WORDS:
        line = f"/{word}"
        try:
            parse_command(line)
        except ValueError as exc:  # it wants arguments: a usage, never "unknown"
            assert "unknown command" not in str(exc), word
