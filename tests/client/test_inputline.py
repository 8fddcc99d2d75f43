"""The message line's memory: Up/Down through what was typed, Tab completion, pastes."""

from __future__ import annotations

from chat.client.inputline import PASTE_ASK_LINES, Completer, InputHistory, split_paste


def test_up_walks_back_and_down_returns_to_the_draft() -> None:
    h = InputHistory()
    for line in ("one", "two", "three"):
        h.add(line)
    assert h.older("my draft") == "three"
    assert h.older("three") == "two"
    assert h.older("two") == "one"
    assert h.older("one") is None  # the oldest: stays
    assert h.newer() == "two"
    assert h.newer() == "three"
    assert h.newer() == "my draft"
    assert h.newer() is None


def test_sending_starts_the_walk_over_and_repeats_and_blanks_are_not_kept() -> None:
    h = InputHistory(size=3)
    for line in ("a", "a", "   ", "b", "c", "d"):
        h.add(line)
    assert h.lines == ["b", "c", "d"]
    assert h.older("") == "d"
    h.add("e")
    assert h.older("") == "e"


def test_nothing_typed_yet_means_nothing_to_recall() -> None:
    h = InputHistory()
    assert h.older("draft") is None and h.newer() is None


NAMES = ["bob", "Bella", "carol", "dave.x"]


def test_a_name_at_the_start_of_the_line_gets_a_colon() -> None:
    assert Completer().complete("ca", 2, NAMES) == ("carol: ", 7)


def test_tab_again_cycles_case_insensitively_in_order() -> None:
    c = Completer()
    value, cursor = c.complete("ask b", 5, NAMES) or ("", 0)
    assert (value, cursor) == ("ask Bella ", 10)
    assert c.complete(value, cursor, NAMES) == ("ask bob ", 8)
    assert c.complete("ask bob ", 8, NAMES) == ("ask Bella ", 10)


def test_completion_after_at_and_commas_and_in_the_middle() -> None:
    c = Completer()
    assert c.complete("@da", 3, NAMES) == ("@dave.x ", 8)
    assert Completer().complete("@bob,ca hi", 7, NAMES) == ("@bob,carol hi", 10)
    assert Completer().complete("/msg ca", 7, NAMES) == ("/msg carol ", 11)


def test_nothing_to_complete() -> None:
    assert Completer().complete("", 0, NAMES) is None
    assert Completer().complete("hello zz", 8, NAMES) is None
    assert Completer().complete("hello ", 6, NAMES) is None


def test_a_paste_splits_into_complete_lines_and_the_rest() -> None:
    pasted = split_paste("say: ", "one\r\ntwo\n\nthree", " end")
    assert pasted.lines == ("say: one", "two")  # the blank line is not a message
    assert pasted.rest == "three end"
    assert not pasted.ask


def test_more_than_a_few_lines_ask_first() -> None:
    lines = "".join(f"line {i}\n" for i in range(PASTE_ASK_LINES + 1))
    pasted = split_paste("", lines)
    assert pasted.ask and len(pasted.lines) == PASTE_ASK_LINES + 1 and pasted.rest == ""
    assert not split_paste("", "x\n" * PASTE_ASK_LINES).ask


def test_a_paste_without_a_newline_is_just_text_and_keeps_its_tabs() -> None:
    pasted = split_paste("ab", "\tc", "d")
    assert pasted.lines == () and pasted.rest == "ab\tcd"
    assert split_paste("", "x\ty\n").lines == ("x\ty",)


def test_completion_offers_names_in_natural_order() -> None:
    completer = Completer()
    names = ["x10", "x2", "x1"]
    got = [completer.complete("x", 1, names)]
    got.append(completer.complete(*got[-1], names))  # type: ignore[misc]
    got.append(completer.complete(*got[-1], names))  # type: ignore[misc]
    assert [value for value, _ in got] == ["x1: ", "x2: ", "x10: "]  # type: ignore[misc]
