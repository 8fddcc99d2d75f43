"""The cffi binding against the header it copies (issue "1 of 6", items 25 and 26).

`native.py` declares libchatdispatch's functions and numbers by hand (ABI mode:
nothing is compiled at install time). These tests hold the copy to
native/dispatch/include/chat_dispatch.h, so a change of the header that is not
made in the binding fails here instead of corrupting memory at run time; and they
check that every code an append can return is understood (a missing one raised
KeyError and dropped the rest of a worker's batch).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat.server.core import native
from chat.server.core.outbuf import Append, OutBuffer
from chat.shared.errors import LocalProtocolError

HEADER = Path(__file__).parents[2] / "native/dispatch/include/chat_dispatch.h"


def _declarations(text: str) -> list[str]:
    """Every declaration of a C text, comments, preprocessor lines and CD_API removed,
    whitespace normalised: one string per `;`-terminated statement."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = text.replace("CD_API", " ").replace('extern "C" {', " ")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*([(),*;])\s*", r"\1", text)
    decls = [d.strip() for d in text.split(";")]
    return [d for d in decls if d and d != "}"]


def test_every_function_of_the_header_is_declared_exactly_as_there() -> None:
    header = _declarations(HEADER.read_text())
    binding = _declarations(native._CDEF)
    assert sorted(binding) == sorted(header)


def test_every_number_of_the_header_has_its_value_in_the_binding() -> None:
    defines = dict(
        re.findall(r"^#define CD_([A-Z_]+) \(?(-?\d+)u?\)?", HEADER.read_text(), flags=re.M)
    )
    assert defines, "no CD_ numbers found in the header"
    for name, value in defines.items():
        assert getattr(native, name) == int(value), name


@pytest.fixture
def table() -> native.OutTable:
    # Limits no allocator can meet: a length past them reaches malloc, which refuses it.
    return native.OutTable(4, 2**63, 2**63, 2**63)


def test_no_memory_for_a_slot_is_an_overflow_that_closes_it(table: native.OutTable) -> None:
    out = OutBuffer(table, table.open(0, -1, direct=False), direct=False)
    lib = native.lib()
    assert out.append(b"hello") is Append.OK
    rc = lib.cd_append(table.ptr, native.NULL, out.handle, b"x" * 16, 2**62)
    assert rc == native.OVERFLOW
    assert out.overflow and len(out) == 5
    assert out.append(b"more") is Append.OVERFLOW  # nothing after it: the owner is dropped


def test_a_fanout_names_each_recipient_it_missed(table: native.OutTable) -> None:
    a = OutBuffer(table, table.open(0, -1, direct=False), direct=False)
    b = OutBuffer(table, table.open(1, -1, direct=False), direct=False)
    c = OutBuffer(table, table.open(2, -1, direct=False), direct=False)
    b.seal(b"bye")
    handles = native.ffi.new("uint64_t[]", [a.handle, b.handle, c.handle])
    failed = native.ffi.new("uint8_t[]", 3)
    assert table.fanout(None, b"msg", handles, 3, 0, failed) == 2
    assert list(failed) == [0, 1, 0]


def test_an_append_the_library_refuses_as_misuse_is_our_bug(table: native.OutTable) -> None:
    out = OutBuffer(table, table.open(0, -1, direct=False), direct=False)
    assert native.lib().cd_append(table.ptr, native.NULL, out.handle, native.NULL, 3) == -1
    from chat.server.core import outbuf

    with pytest.raises(LocalProtocolError):
        outbuf._result(native.EINVAL)
