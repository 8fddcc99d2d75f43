"""Line mode: how stdin lines are addressed and how events are printed."""

from __future__ import annotations

import json

import pytest

from chat.client import events as ev
from chat.client.lineformat import as_json, human
from chat.client.linemode import parse_line
from chat.shared.messages import Msg


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello\n", ("*", "hello")),
        ("@bob hi there\n", (("bob",), "hi there")),
        ("@bob,carol group\r\n", (("bob", "carol"), "group")),
        ("@bob,bob once", (("bob",), "once")),
        ("@* everyone", ("*", "everyone")),
        ("@@not an address", ("*", "@not an address")),
        ("  leading spaces kept", ("*", "  leading spaces kept")),
        ("привет", ("*", "привет")),
    ],
)
def test_parse_line(line: str, expected: tuple) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", ["\n", "   \n", ""])
def test_blank_lines_are_skipped(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("@bob", "nothing to send"),
        ("@bob,,carol x", "not a valid user name"),
        ("@bad!name x", "not a valid user name"),
    ],
)
def test_bad_addresses_are_refused(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


def test_human_lines() -> None:
    msg = Msg(1, "bob", ("alice",), "psst", 0.0)
    assert human(ev.Incoming(msg), "alice")[0].endswith(" <bob> [private] psst")
    group = Msg(2, "bob", ("alice", "carol"), "hey", 0.0)
    assert human(ev.Incoming(group), "alice")[0].endswith(" <bob> [group: alice, carol] hey")
    assert human(ev.Delivered(3, ("bob",), ("carol",)), "alice")[0].endswith(
        " > #3 delivered: bob; missing: carol"
    )
    assert [line[9:] for line in human(ev.RosterChanged(("c",), ("b",), ("c",)), "a")] == [
        "* c joined",
        "* b left",
    ]
    assert human(ev.LoggedIn("a", (), False), "a")[0].endswith("* online: nobody else")


def test_json_lines_are_objects_with_an_event_field() -> None:
    msg = Msg(1, "bob", "*", "你好", 1.25)
    obj = json.loads(as_json(ev.Incoming(msg)) or "")
    assert obj == {"event": "msg", "id": 1, "from": "bob", "to": "*", "text": "你好", "ts": 1.25}
    assert "你好" in (as_json(ev.Incoming(msg)) or "")  # readable, not \\u escapes
    assert json.loads(as_json(ev.SendRefused(4, "rate_limited", "slow")) or "") == {
        "event": "error",
        "id": 4,
        "code": "rate_limited",
        "message": "slow",
    }
    assert as_json(ev.Connecting("h", 1, 1)) is None
