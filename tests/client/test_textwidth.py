"""Column widths and wrapping: CJK counts two columns, nothing overflows."""

from __future__ import annotations

import pytest

from chat.client.textwidth import char_width, clip, printable, text_width, wrap


def test_widths() -> None:
    assert text_width("abc") == 3
    assert text_width("привет") == 6
    assert text_width("你好") == 4
    assert char_width("\u0301") == 0  # combining acute accent


def test_clip_never_splits_a_wide_character_over_the_edge() -> None:
    assert clip("你好吗", 5) == "你好"
    assert clip("abc", 10) == "abc"


@pytest.mark.parametrize(
    "text",
    [
        "hello world " * 20,
        "你好世界" * 30,
        "привет мир " * 15,
        "x" * 300,
        "mixed 你好 text, привет and more words " * 5,
    ],
)
@pytest.mark.parametrize("width", [1, 2, 7, 20, 79])
def test_wrapped_lines_fit_and_keep_every_character(text: str, width: int) -> None:
    lines = wrap(text, width, indent=4)
    for line in lines:
        assert text_width(line) <= width or len(line.strip()) == 1
    joined = "".join(line.strip() for line in lines).replace(" ", "")
    assert joined == text.replace(" ", "")


def test_wrap_prefers_spaces_and_indents_continuations() -> None:
    assert wrap("aaa bbb ccc", 7, indent=2) == ["aaa bbb", "  ccc"]


def test_control_characters_are_made_harmless() -> None:
    assert printable("a\nb\x1b[2Jc") == "a b?[2Jc"


def test_no_empty_trailing_line() -> None:
    assert wrap("你", 1) == ["你"]
    assert wrap("ab 你", 3) == ["ab", "你"]
