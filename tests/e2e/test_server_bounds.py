"""Integers out of their bounds, against the real server: refused, and nothing wedges.

Each of the first three tests is one frame from the issue that used to kill a
server thread or hang a connection: an `offline_ack` whose `upto` SQLite cannot
hold (the store's writer thread died, and every later durable `sent` with it),
a `history` whose `before` SQLite cannot hold (the page never came, the
connection's mailbox waited for it forever), and a `history` with `limit: null`
(answered as if absent). The contract's words: `limit` is an int 1..200 when
present, `before` a msg id; docs/protocol.md section 3a has every bound.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import (
    PASSWORD,
    assert_error,
    messages,
    next_frame,
    online,
    register,
    request,
    still_usable,
)

#: JavaScript's Number.MAX_SAFE_INTEGER: the largest id the wire carries.
MAX_ID = 2**53 - 1


def no_traceback(server: ServerProc) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-3000:]


def sent_to(client: Any, to: list[str] | str, text: str, msg_id: Any) -> dict[str, Any]:
    """Send and return the `sent` (within 5 s, or TimeoutError)."""
    answer = request(client, {"type": "send", "id": msg_id, "to": to, "text": text})
    assert answer["type"] == "sent" and answer["id"] == msg_id, answer
    return answer


# --- the three frames of the issue ---------------------------------------------------------
def test_an_offline_ack_below_any_id_is_refused_and_the_store_keeps_writing(
    server: ServerProc,
) -> None:
    register(server, "bob")
    alice = online(server, "alice")
    alice.send({"type": "offline_ack", "upto": -(10**30)})
    # The store's writer is alive: a message to bob (registered, offline) is stored
    # durably and its `sent` names him as queued; the connection still answers.
    alice.send({"type": "send", "id": "q1", "to": ["bob"], "text": "kept for bob"})
    alice.send({"type": "ping"})
    assert_error(next_frame(alice), "bad_request")
    sent = next_frame(alice)
    assert sent["type"] == "sent" and sent["id"] == "q1" and sent["queued"] == ["bob"], sent
    assert next_frame(alice) == {"type": "pong"}
    carol = server.client()
    carol.login("carol", PASSWORD)
    assert still_usable(carol)
    assert sent_to(carol, ["bob"], "also for bob", 2)["queued"] == ["bob"]
    bob = server.client()
    bob.login("bob", PASSWORD, register=False)
    assert [m["text"] for m in messages(bob, 2)] == ["kept for bob", "also for bob"]
    no_traceback(server)


def test_a_history_before_below_any_id_is_bad_request_and_the_ping_after_it_is_answered(
    server: ServerProc,
) -> None:
    alice = online(server, "alice")
    alice.send({"type": "history", "id": "h", "with": "*", "before": -9223372036854775809})
    alice.send({"type": "ping"})
    assert_error(next_frame(alice), "bad_request", "h")
    assert next_frame(alice) == {"type": "pong"}
    no_traceback(server)


def test_a_history_limit_null_is_bad_request_with_the_id(server: ServerProc) -> None:
    alice = online(server, "alice")
    answer = request(alice, {"type": "history", "id": "h", "with": "*", "limit": None})
    assert_error(answer, "bad_request", "h")
    assert still_usable(alice)


# --- every integer field, just inside and just outside --------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"before": -MAX_ID - 1},
        {"before": MAX_ID + 1},
        {"before": 2**63},
        {"before": None},
        {"limit": None},
        {"limit": 2**64},
        {"limit": -(2**63) - 1},
    ],
    ids=repr,
)
def test_history_integers_out_of_bounds_are_bad_request_with_the_id(
    server: ServerProc, fields: dict[str, Any]
) -> None:
    alice = online(server, "alice")
    answer = request(alice, {"type": "history", "id": 9, "with": "*"} | fields)
    assert_error(answer, "bad_request", 9)
    assert still_usable(alice)
    no_traceback(server)


def test_history_takes_the_outermost_ids_inside_the_bounds(server: ServerProc) -> None:
    """A `before` that names no message (1 or less) is an empty page, not an error."""
    alice = online(server, "alice")
    sent_to(alice, "*", "one", 1)
    for before, count in [(-MAX_ID, 0), (0, 0), (1, 0), (MAX_ID, 1)]:
        page = request(alice, {"type": "history", "id": "h", "with": "*", "before": before})
        assert page["type"] == "history" and len(page["messages"]) == count, page


@pytest.mark.parametrize("upto", [-MAX_ID - 1, MAX_ID + 1, 2**63, -(2**63) - 1, None], ids=repr)
def test_offline_ack_out_of_bounds_is_bad_request_without_id(server: ServerProc, upto: Any) -> None:
    alice = online(server, "alice")
    answer = request(alice, {"type": "offline_ack", "upto": upto})
    assert_error(answer, "bad_request")
    assert "id" not in answer
    assert still_usable(alice)
    no_traceback(server)


@pytest.mark.parametrize("upto", [-MAX_ID, -1, 0, MAX_ID])
def test_offline_ack_at_its_bounds_is_accepted_without_an_answer(
    server: ServerProc, upto: int
) -> None:
    alice = online(server, "alice")
    alice.send({"type": "offline_ack", "upto": upto})
    assert request(alice, {"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    "bad_id", [MAX_ID + 1, -MAX_ID - 1, 2**63, 10**30, "x" * 129], ids=lambda v: repr(v)[:20]
)
def test_a_send_id_out_of_bounds_is_refused_without_echo(server: ServerProc, bad_id: Any) -> None:
    alice = online(server, "alice")
    answer = request(alice, {"type": "send", "id": bad_id, "to": "*", "text": "hi"})
    assert_error(answer, "bad_request")
    assert "id" not in answer
    assert still_usable(alice)


@pytest.mark.parametrize("good_id", [MAX_ID, -MAX_ID, 0, "", "x" * 128])
def test_a_send_id_at_its_bounds_is_echoed(server: ServerProc, good_id: Any) -> None:
    alice = online(server, "alice")
    answer = sent_to(alice, "*", "hi", good_id)
    assert type(answer["id"]) is type(good_id)


@pytest.mark.parametrize("seq", [2**63, -(2**63) - 1, MAX_ID + 1, 0])
def test_a_roster_ack_seq_out_of_bounds_is_bad_request(server: ServerProc, seq: int) -> None:
    alice = online(server, "alice")
    assert_error(request(alice, {"type": "roster_ack", "seq": seq}), "bad_request")
    assert still_usable(alice)
    no_traceback(server)
