"""Every error code of protocol v1, fatal and non-fatal, against the real server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from server_support import (
    PASSWORD,
    assert_error,
    fatal,
    is_closed,
    messages,
    next_frame,
    online,
    register,
    request,
    roster_changes,
    send_msg,
    still_usable,
    wait_for,
)

from wire import Closed, frame

# ---- bad_request ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hello", "", "auth_ok", "msg", "Ping"])
def test_unknown_type_after_login_is_bad_request_and_not_fatal(server, kind: str) -> None:
    c = online(server, "alice")
    assert_error(request(c, {"type": kind}), "bad_request")
    assert still_usable(c)


@pytest.mark.parametrize("kind", ["hello", ""])
def test_unknown_type_before_login_is_refused_and_not_fatal(server, kind: str) -> None:
    c = server.client()
    answer = request(c, {"type": kind})
    assert answer["type"] == "error" and answer["code"] in {"bad_request", "not_authenticated"}
    assert still_usable(c)
    c.login("alice", PASSWORD)


BAD_AUTH: dict[str, dict[str, Any]] = {
    "missing_user": {"password": "pw"},
    "missing_password": {"user": "alice"},
    "user_not_string": {"user": 7, "password": "pw"},
    "user_null": {"user": None, "password": "pw"},
    "password_not_string": {"user": "alice", "password": 12345},
    "register_string": {"user": "alice", "password": "pw", "register": "true"},
    "register_number": {"user": "alice", "password": "pw", "register": 1},
    "empty_name": {"user": "", "password": "pw"},
    "name_starts_with_dash": {"user": "-alice", "password": "pw"},
    "name_starts_with_underscore": {"user": "_alice", "password": "pw"},
    "name_with_space": {"user": "al ice", "password": "pw"},
    "name_with_at": {"user": "al@ice", "password": "pw"},
    "name_non_ascii": {"user": "alicé", "password": "pw"},
    "name_33_chars": {"user": "a" * 33, "password": "pw"},
    "empty_password": {"user": "alice", "password": ""},
    "password_257_chars": {"user": "alice", "password": "p" * 257},
    "password_257_code_points": {"user": "alice", "password": "ж" * 257},
}


@pytest.mark.parametrize("register_flag", [True, False], ids=["register", "login"])
@pytest.mark.parametrize("kind", list(BAD_AUTH))
def test_ill_formed_auth_is_bad_request_and_not_fatal(
    server, kind: str, register_flag: bool
) -> None:
    fields = dict(BAD_AUTH[kind])
    fields.setdefault("register", register_flag)
    c = server.client()
    assert_error(request(c, {"type": "auth", **fields}), "bad_request")
    assert still_usable(c)
    c.login("alice", PASSWORD)


@pytest.mark.parametrize("name", ["a", "A" * 32, "Z9_.-x", "0day", "a.b-c_d"])
def test_names_at_the_bounds_of_the_pattern_are_accepted(server, name: str) -> None:
    online(server, name)


def test_names_are_case_sensitive(server) -> None:
    online(server, "Bob")
    bob = online(server, "bob")
    assert bob is not None


def test_password_limits_count_code_points_not_bytes(server) -> None:
    # 256 code points of two and four bytes each: 512 and 1024 bytes of UTF-8
    for name, password in (("two", "ж" * 256), ("four", "😀" * 256), ("one", "x")):
        c = online(server, name, password=password)
        c.close()
        online(server, name, password=password, register=False)


BAD_SEND: dict[str, dict[str, Any]] = {
    "missing_to": {"text": "hi"},
    "to_empty_list": {"to": [], "text": "hi"},
    "to_plain_name_string": {"to": "bob", "text": "hi"},
    "to_empty_string": {"to": "", "text": "hi"},
    "to_number": {"to": 5, "text": "hi"},
    "to_null": {"to": None, "text": "hi"},
    "to_list_of_number": {"to": [5], "text": "hi"},
    "to_list_with_bad_name": {"to": ["bob", "b o b"], "text": "hi"},
    "to_list_with_star": {"to": ["*"], "text": "hi"},
    "missing_text": {"to": "*"},
    "text_empty": {"to": "*", "text": ""},
    "text_not_string": {"to": "*", "text": 42},
    "text_4097_chars": {"to": "*", "text": "x" * 4097},
    "text_4097_code_points": {"to": "*", "text": "😀" * 4097},
}


@pytest.mark.parametrize("kind", list(BAD_SEND))
def test_ill_formed_send_is_bad_request_with_its_id_and_not_fatal(server, kind: str) -> None:
    c = online(server, "alice")
    answer = request(c, {"type": "send", "id": "m-7", **BAD_SEND[kind]})
    assert_error(answer, "bad_request", msg_id="m-7")
    assert still_usable(c)


@pytest.mark.parametrize(
    "bad_id", [True, 1.5, None, [1], {"a": 1}], ids=["bool", "float", "null", "list", "object"]
)
def test_send_with_ill_typed_id_is_bad_request(server, bad_id: Any) -> None:
    c = online(server, "alice")
    answer = request(c, {"type": "send", "id": bad_id, "to": "*", "text": "hi"})
    assert_error(answer, "bad_request")
    assert still_usable(c)


def test_send_without_id_is_bad_request(server) -> None:
    c = online(server, "alice")
    assert_error(request(c, {"type": "send", "to": "*", "text": "hi"}), "bad_request")
    assert still_usable(c)


@pytest.mark.parametrize("msg_id", ["", "abc", 0, -3, 2**40], ids=repr)
def test_send_ids_of_any_string_or_int_are_echoed_unchanged(server, msg_id: Any) -> None:
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    answer = request(alice, {"type": "send", "id": msg_id, "to": ["bob"], "text": "hi"})
    assert answer["type"] == "sent" and answer["id"] == msg_id
    assert type(answer["id"]) is type(msg_id)


def test_text_of_4096_code_points_in_four_byte_characters_is_accepted(server) -> None:
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    text = "😀" * 4096  # 16 KiB of UTF-8, 4096 code points
    assert send_msg(alice, ["bob"], text)["delivered"] == ["bob"]
    assert messages(bob, 1)[0]["text"] == text


@pytest.mark.parametrize("seq", [None, "1", 1.0, True], ids=["missing", "string", "float", "bool"])
def test_ill_typed_roster_ack_is_bad_request_and_not_fatal(server, seq: Any) -> None:
    c = online(server, "alice")
    ack = {"type": "roster_ack"} if seq is None else {"type": "roster_ack", "seq": seq}
    assert_error(request(c, ack), "bad_request")
    assert still_usable(c)


# ---- not_authenticated / not_ready ------------------------------------------


@pytest.mark.parametrize("msg_id", ["m1", 17], ids=["string_id", "int_id"])
def test_send_before_login_is_not_authenticated_with_its_id(server, msg_id: Any) -> None:
    c = server.client()
    answer = request(c, {"type": "send", "id": msg_id, "to": "*", "text": "hi"})
    assert_error(answer, "not_authenticated", msg_id=msg_id)
    assert still_usable(c)
    c.login("alice", PASSWORD)


def test_roster_ack_before_login_is_not_authenticated(server) -> None:
    c = server.client()
    assert_error(request(c, {"type": "roster_ack", "seq": 1}), "not_authenticated")
    c.login("alice", PASSWORD)


@pytest.mark.parametrize("msg_id", ["m1", 17], ids=["string_id", "int_id"])
def test_send_before_roster_ack_is_not_ready_with_its_id(server, msg_id: Any) -> None:
    bob = online(server, "bob")
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "register": True})
    assert c.recv() == {"type": "auth_ok", "user": "alice"}
    roster = c.recv()
    assert roster["type"] == "roster" and roster["full"] is True
    answer = request(c, {"type": "send", "id": msg_id, "to": ["bob"], "text": "early"})
    assert_error(answer, "not_ready", msg_id=msg_id)
    assert bob.silent(0.2), "a not_ready send must not be delivered"
    c.send({"type": "roster_ack", "seq": roster["seq"]})
    roster_changes(bob, join=["alice"])
    assert send_msg(c, ["bob"], "now")["delivered"] == ["bob"]
    assert messages(bob, 1)[0]["text"] == "now"


# ---- bad_credentials / user_exists -------------------------------------------


def test_bad_credentials_reads_the_same_for_unknown_user_and_wrong_password(server) -> None:
    register(server, "alice")
    c = server.client()
    wrong = request(c, {"type": "auth", "user": "alice", "password": "wrong"})
    unknown = request(c, {"type": "auth", "user": "mallory", "password": PASSWORD})
    assert_error(wrong, "bad_credentials")
    assert_error(unknown, "bad_credentials")
    assert wrong["message"] == unknown["message"]
    assert "alice" not in wrong["message"] and "mallory" not in unknown["message"]
    assert still_usable(c)
    c.login("alice", PASSWORD, register=False)


def test_login_with_register_false_by_default_needs_an_account(server) -> None:
    c = server.client()
    assert_error(
        request(c, {"type": "auth", "user": "nobody", "password": "pw"}), "bad_credentials"
    )


def test_registering_a_taken_name_is_user_exists_and_not_fatal(server) -> None:
    register(server, "alice")
    c = server.client()
    answer = request(c, {"type": "auth", "user": "alice", "password": "other", "register": True})
    assert_error(answer, "user_exists")
    assert still_usable(c)
    c.login("alice", PASSWORD, register=False)


def test_auth_after_login_is_refused_and_not_fatal(server) -> None:
    c = online(server, "alice")
    answer = request(c, {"type": "auth", "user": "alice", "password": PASSWORD})
    assert answer["type"] == "error" and answer["code"] in NON_FATAL, answer
    assert still_usable(c)


NON_FATAL = {
    "bad_request",
    "not_authenticated",
    "not_ready",
    "bad_credentials",
    "user_exists",
    "rate_limited",
}


# ---- too_many_attempts -------------------------------------------------------


def _fifth_failure_closes(c) -> None:
    """Clarification 2: too_many_attempts alone, or bad_credentials then it; then the close."""
    c.send({"type": "auth", "user": "alice", "password": "wrong-5"})
    frames = c.expect_closed()
    codes = [f.get("code") for f in frames]
    assert codes in (["too_many_attempts"], ["bad_credentials", "too_many_attempts"]), frames
    assert all(f["type"] == "error" for f in frames), frames


def test_five_failed_logins_end_the_connection_with_too_many_attempts(server) -> None:
    register(server, "alice")
    c = server.client()
    for i in range(4):
        assert_error(
            request(c, {"type": "auth", "user": "alice", "password": f"wrong-{i}"}),
            "bad_credentials",
        )
    _fifth_failure_closes(c)


def test_unknown_users_count_toward_too_many_attempts(server) -> None:
    c = server.client()
    for i in range(4):
        assert_error(
            request(c, {"type": "auth", "user": f"ghost{i}", "password": "x"}), "bad_credentials"
        )
    _fifth_failure_closes(c)


def test_only_bad_credentials_count_toward_too_many_attempts(server) -> None:
    register(server, "alice")
    c = server.client()
    for _ in range(5):
        assert_error(request(c, {"type": "auth", "user": "b a d", "password": "x"}), "bad_request")
        assert_error(
            request(c, {"type": "auth", "user": "alice", "password": "x", "register": True}),
            "user_exists",
        )
        assert_error(
            request(c, {"type": "send", "id": 1, "to": "*", "text": "x"}), "not_authenticated"
        )
        unknown = request(c, {"type": "nope"})  # clarification 5 allows either code
        assert unknown["type"] == "error", unknown
        assert unknown["code"] in {"bad_request", "not_authenticated"}, unknown
    for i in range(4):
        assert_error(
            request(c, {"type": "auth", "user": "alice", "password": f"wrong-{i}"}),
            "bad_credentials",
        )
    assert still_usable(c)
    c.login("alice", PASSWORD, register=False)


def test_five_pipelined_failures_close_and_nothing_after_them_is_answered(server) -> None:
    register(server, "alice")
    c = server.client()
    c.send_raw(
        b"".join(frame({"type": "auth", "user": "alice", "password": f"bad{i}"}) for i in range(5))
        + frame({"type": "ping"}) * 3
    )
    frames = c.expect_closed()
    codes = [f.get("code") for f in frames]
    assert codes in (
        ["bad_credentials"] * 4 + ["too_many_attempts"],
        ["bad_credentials"] * 5 + ["too_many_attempts"],
    ), frames


def test_concurrent_registrations_of_one_name_make_exactly_one_account(server) -> None:
    clients = [server.client() for _ in range(6)]
    for i, c in enumerate(clients):
        c.send({"type": "auth", "user": "alice", "password": f"pw{i}", "register": True})
    answers = [c.recv() for c in clients]
    winners = [i for i, a in enumerate(answers) if a["type"] == "auth_ok"]
    assert len(winners) == 1, answers
    for i, a in enumerate(answers):
        if i not in winners:
            assert_error(a, "user_exists")
    online(server, "alice", password=f"pw{winners[0]}", register=False)


def test_too_many_attempts_counts_per_connection(server) -> None:
    register(server, "alice")
    first = server.client()
    for i in range(4):
        request(first, {"type": "auth", "user": "alice", "password": f"wrong-{i}"})
    other = server.client()
    assert_error(
        request(other, {"type": "auth", "user": "alice", "password": "no"}), "bad_credentials"
    )
    _fifth_failure_closes(first)
    other.login("alice", PASSWORD, register=False)


# ---- timeout -----------------------------------------------------------------


def test_unacked_full_roster_times_out_with_a_fatal_timeout(start_server) -> None:
    server = start_server("--ack-timeout", "0.5")
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "register": True})
    assert c.recv()["type"] == "auth_ok"
    assert c.recv()["type"] == "roster"
    fatal(c, "timeout", timeout=10)


def test_unacked_roster_delta_times_out_with_a_fatal_timeout(start_server) -> None:
    server = start_server("--ack-timeout", "0.5")
    alice = online(server, "alice")
    bob = online(server, "bob")
    frames = alice.expect_closed(timeout=10)  # the join delta, never acked, then timeout
    assert frames[0]["type"] == "roster" and frames[0]["join"] == ["bob"], frames
    assert len(frames) == 2, frames
    assert_error(frames[1], "timeout")
    roster_changes(bob, leave=["alice"])


def test_pings_do_not_stop_an_unacked_roster_from_timing_out(start_server) -> None:
    server = start_server("--ack-timeout", "0.8")
    c = server.client()
    c.send({"type": "auth", "user": "alice", "password": PASSWORD, "register": True})
    assert c.recv()["type"] == "auth_ok" and c.recv()["type"] == "roster"
    deadline = time.monotonic() + 10
    frames: list[dict] = []
    try:
        while time.monotonic() < deadline:
            c.send({"type": "ping"})
            frames.append(c.recv(1))
            time.sleep(0.1)
    except (Closed, ConnectionError):
        pass
    errors = [f for f in frames if f["type"] != "pong"]
    assert len(errors) == 1 and frames[-1] is errors[0], frames
    assert_error(errors[0], "timeout")


def test_acked_rosters_do_not_time_out(start_server) -> None:
    server = start_server("--ack-timeout", "0.5", "--idle-timeout", "0")
    alice = online(server, "alice")
    online(server, "bob")
    roster_changes(alice, join=["bob"])
    assert alice.silent(1.8)
    assert still_usable(alice)


def test_idle_connection_is_closed_with_timeout(start_server) -> None:
    server = start_server("--idle-timeout", "0.5")
    c = server.client()
    frames = c.expect_closed(timeout=10)
    assert [f.get("code") for f in frames] in ([], ["timeout"]), frames
    chat = online(server, "alice")
    frames = chat.expect_closed(timeout=10)
    assert [f.get("code") for f in frames] in ([], ["timeout"]), frames


def test_pings_keep_a_connection_past_the_idle_timeout(start_server) -> None:
    server = start_server("--idle-timeout", "1")
    c = online(server, "alice")
    end = time.monotonic() + 2.2
    while time.monotonic() < end:
        assert request(c, {"type": "ping"}) == {"type": "pong"}
        time.sleep(0.1)


# ---- rate_limited ------------------------------------------------------------


def test_sends_over_the_rate_limit_are_rate_limited_with_id_and_not_delivered(start_server) -> None:
    server = start_server("--rate-limit", "1", "--rate-burst", "3")
    bob = online(server, "bob")
    alice = online(server, "alice")
    roster_changes(bob, join=["alice"])
    for i in range(10):
        alice.send({"type": "send", "id": i, "to": ["bob"], "text": f"t{i}"})
    answers = [next_frame(alice) for _ in range(10)]
    assert [a["id"] for a in answers] == list(range(10)), answers
    sent = [a["id"] for a in answers if a["type"] == "sent"]
    limited = [a for a in answers if a["type"] == "error"]
    assert limited, "10 sends at once with --rate-limit 1 --rate-burst 3 were all accepted"
    for a in limited:
        assert_error(a, "rate_limited", msg_id=a["id"])
    assert len(sent) + len(limited) == 10
    got = messages(bob, len(sent))
    assert [m["text"] for m in got] == [f"t{i}" for i in sent]
    assert bob.silent(0.2)
    assert still_usable(alice)


# ---- server_full -------------------------------------------------------------


def test_connection_over_max_clients_gets_server_full_and_is_closed(start_server) -> None:
    # Every slot logged in: nobody can be evicted (a connection not logged in would be,
    # at once: tests/e2e/test_server_eviction.py).
    server = start_server("--max-clients", "2")
    alice = online(server, "alice")
    bob = online(server, "bob")
    extra = server.client()
    frames = extra.expect_closed(timeout=5)
    assert len(frames) == 1, frames
    assert_error(frames[0], "server_full")
    assert still_usable(alice) and still_usable(bob)


def test_a_freed_slot_admits_a_new_client(start_server) -> None:
    server = start_server("--max-clients", "1")
    first = online(server, "first")
    extra = server.client()
    fatal(extra, "server_full")
    first.send({"type": "bye"})
    first.expect_closed()
    first.close()

    def admitted() -> bool:
        c = server.client()
        try:
            return request(c, {"type": "ping"}) == {"type": "pong"}
        except (Closed, ConnectionError):
            return False
        finally:
            c.close()

    assert wait_for(admitted, timeout=5)


def test_server_full_is_sent_without_waiting_for_the_client(start_server) -> None:
    server = start_server("--max-clients", "1")
    first = online(server, "first")
    assert still_usable(first)
    extra = server.client()
    frame = extra.recv(timeout=3)  # the client says nothing at all
    assert_error(frame, "server_full")
    assert is_closed(extra)
