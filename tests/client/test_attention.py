"""What calls for attention: a private or group message, or your name as a word."""

from __future__ import annotations

import pytest

from chat.client.attention import is_for_me, mentions
from chat.shared.messages import Msg


@pytest.mark.parametrize(
    "text",
    ["alice: hi", "hi Alice", "@alice look", "ALICE?", "ask alice.", "(alice)", "alice's turn"],
)
def test_a_name_as_a_word_is_a_mention(text: str) -> None:
    assert mentions(text, "alice")


@pytest.mark.parametrize("text", ["malice", "alicex", "alice_b here", "alice-b", "alice.b", ""])
def test_a_name_inside_another_is_not(text: str) -> None:
    assert not mentions(text, "alice")


def test_names_with_dots_and_dashes_are_words_too() -> None:
    assert mentions("hi a.b-c!", "a.b-c") and not mentions("hi xa.b-c", "a.b-c")


def test_private_group_and_mentions_are_for_me_my_own_and_plain_talk_are_not() -> None:
    assert is_for_me(Msg(1, "bob", ("alice",), "psst", 0.0), "alice")
    assert is_for_me(Msg(2, "bob", ("alice", "carol"), "hey", 0.0), "alice")
    assert is_for_me(Msg(3, "bob", "*", "alice, lunch?", 0.0), "alice")
    assert not is_for_me(Msg(4, "bob", "*", "lunch?", 0.0), "alice")
    assert not is_for_me(Msg(5, "alice", ("bob",), "alice here", 0.0), "alice")
