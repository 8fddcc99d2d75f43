"""Screen layout and the login form's server field (pure parts of the TUI)."""

from __future__ import annotations

import pytest

from chat.client.forms import MIN_COLUMNS, MIN_LINES, group_label, layout, parse_server


@pytest.mark.parametrize(("lines", "columns"), [(6, 30), (24, 80), (50, 200), (10, 31)])
@pytest.mark.parametrize("buffers", [1, 3, 40])
def test_boxes_fit_the_screen_and_do_not_overlap(lines: int, columns: int, buffers: int) -> None:
    out = layout(lines, columns, buffers=buffers)
    assert out.fits
    p, b, h, i = out.participants, out.buffers, out.history, out.input
    assert p.y == h.y == 1 and h.height == lines - 3
    # The people over the buffers, in the left column, at most half of it buffers.
    assert p.height + b.height == h.height and b.y == p.y + p.height
    assert 2 <= b.height <= max(2, h.height // 2) and b.height <= buffers + 1
    assert p.x == b.x == 0 and p.width == b.width and p.x + p.width < h.x
    assert h.x + h.width <= columns
    assert i.y == lines - 2 and i.width <= columns - 1


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_a_message_of_several_lines_grows_the_message_line_upwards(rows: int) -> None:
    out = layout(30, 100, input_rows=rows)
    assert (out.input.y, out.input.height) == (30 - 1 - rows, rows)
    assert out.history.y + out.history.height == out.input.y


def test_on_a_short_screen_the_message_line_grows_only_as_far_as_it_can() -> None:
    out = layout(7, 40, input_rows=5)
    assert out.fits and out.input.height == 2 and out.history.height == 3


@pytest.mark.parametrize(
    ("lines", "columns"), [(0, 0), (1, 1), (MIN_LINES - 1, 80), (24, MIN_COLUMNS - 1)]
)
def test_too_small_screens_get_empty_boxes(lines: int, columns: int) -> None:
    out = layout(lines, columns)
    assert not out.fits
    assert out.input.width == out.history.height == 0


def test_parse_server() -> None:
    assert parse_server("127.0.0.1:7777") == ("127.0.0.1", 7777)
    assert parse_server(" [::1]:80 ") == ("::1", 80)
    for bad in ("nohost", ":7777", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError):
            parse_server(bad)


def test_a_group_names_everyone_that_fits_and_counts_the_others() -> None:
    names = ["bob", "carol (offline)", "dave", "erin"]
    assert group_label(names, 80) == "bob, carol (offline), dave, erin"
    assert group_label(names, 30) == "bob, carol (offline), +2 more"
    assert group_label(names, 12) == "bob, +3 more"
    assert group_label(names, 5) == "bob, +3 more"  # the widget clips the rest
