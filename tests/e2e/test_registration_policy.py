"""Registration policy: `--min-password N` and `--refuse-case-variants`, on a real server.

The contract's bounds stay the defaults (passwords 1..256, names case-sensitive:
the outside tests register `case...` and `Case...` as two users); each option
tightens one of them for new accounts only.
"""

from __future__ import annotations

import threading

import pytest

from chat.shared.errors import DEFAULT_MESSAGES, Code, Refusal, password_too_short
from together import run_together
from wire import WireClient


def _auth(c: WireClient, user: str, password: str, register: bool = True) -> dict:
    c.send({"type": "auth", "user": user, "password": password, "register": register})
    return c.recv()


def _register(server, user: str, password: str = "a good password") -> dict:
    c = server.client()
    try:
        return _auth(c, user, password)
    finally:
        c.close()


def _ok(user: str) -> dict:
    return {"type": "auth_ok", "user": user}


# --------------------------------------------------------------------------
# --min-password
# --------------------------------------------------------------------------
def test_by_default_a_one_character_password_registers(server) -> None:
    """The contract's bound (1..256) is the default: the outside tests rely on it."""
    assert _register(server, "alice", "p") == _ok("alice")


def test_a_short_password_is_a_bad_request_with_a_clear_message(start_server) -> None:
    server = start_server("--min-password", "8")
    c = server.client()
    answer = _auth(c, "alice", "seven77")
    assert answer == {"type": "error", "code": "bad_request", "message": password_too_short(8)}
    assert "at least 8 characters" in answer["message"]
    # Not a failed login: the connection stays in AUTH, and many do not add up.
    for _ in range(6):
        assert _auth(c, "alice", "x")["code"] == "bad_request"
    assert _auth(c, "alice", "eight888") == _ok("alice")  # exactly 8: accepted
    c.close()
    assert "password too short" in server.log()
    assert "seven77" not in server.log() and "eight888" not in server.log()


def test_lengths_count_code_points(start_server) -> None:
    server = start_server("--min-password", "4")
    assert _register(server, "alice", "\U0001f600" * 3)["code"] == "bad_request"  # 12 bytes
    assert _register(server, "bob", "\U0001f600" * 4) == _ok("bob")


def test_an_account_with_a_shorter_password_still_logs_in(start_server) -> None:
    before = start_server()
    assert _register(before, "alice", "abc") == _ok("alice")
    assert before.stop() == 0
    after = start_server("--min-password", "8")  # the same users file
    c = after.client()
    assert _auth(c, "alice", "abc", register=False) == _ok("alice")
    c.close()


def test_the_password_check_comes_before_the_name_check(start_server) -> None:
    server = start_server("--min-password", "8")
    assert _register(server, "alice") == _ok("alice")
    assert _register(server, "alice", "short")["code"] == "bad_request"
    assert _register(server, "alice")["code"] == "user_exists"


@pytest.mark.parametrize("value", ["0", "257", "eight"])
def test_min_password_out_of_range_is_one_line_exit_2(start_server, value: str) -> None:
    with pytest.raises(RuntimeError, match="exited with 2") as info:
        start_server("--min-password", value)
    assert "--min-password" in str(info.value)


# --------------------------------------------------------------------------
# --refuse-case-variants
# --------------------------------------------------------------------------
def test_by_default_names_differing_in_case_are_two_users(server) -> None:
    """The v1 contract: names are case-sensitive (the outside tests register both)."""
    assert _register(server, "caseuser") == _ok("caseuser")
    assert _register(server, "Caseuser") == _ok("Caseuser")


def test_a_case_variant_of_an_existing_name_is_user_exists(start_server) -> None:
    server = start_server("--refuse-case-variants")
    assert _register(server, "alice") == _ok("alice")
    for variant in ("Alice", "ALICE", "aLiCe", "alice"):
        answer = _register(server, variant)
        assert (answer["type"], answer["code"]) == ("error", "user_exists"), (variant, answer)
    assert _register(server, "a1ice") == _ok("a1ice")  # a look-alike is another name
    c = server.client()
    assert _auth(c, "alice", "a good password", register=False) == _ok("alice")
    c.close()
    c = server.client()  # names stay case-sensitive for logins
    assert _auth(c, "Alice", "a good password", register=False)["code"] == "bad_credentials"
    c.close()


def test_variants_made_before_the_option_keep_working(start_server) -> None:
    before = start_server()
    assert _register(before, "bob") == _ok("bob")
    assert _register(before, "Bob") == _ok("Bob")
    assert before.stop() == 0
    after = start_server("--refuse-case-variants")
    for name in ("bob", "Bob"):
        c = after.client()
        assert _auth(c, name, "a good password", register=False) == _ok(name)
        c.close()
    assert _register(after, "BOB")["code"] == "user_exists"


def test_registrations_of_two_variants_at_once_have_one_winner(start_server) -> None:
    """The check and the insert are under one lock: both cannot pass (each pair at once)."""
    server = start_server("--refuse-case-variants", "--hash-threads", "4")
    results: dict[str, dict] = {}
    names = [n for i in range(8) for n in (f"pair{i}", f"PAIR{i}")]
    barrier = threading.Barrier(len(names))

    def register(name: str) -> None:
        c = server.client()
        try:
            barrier.wait(10)
            results[name] = _auth(c, name, "a good password")
        finally:
            c.close()

    run_together(register, [(name,) for name in names], timeout=30)
    for i in range(8):
        pair = [results[f"pair{i}"], results[f"PAIR{i}"]]
        assert sorted(r["type"] for r in pair) == ["auth_ok", "error"], pair
        assert any(r.get("code") == "user_exists" for r in pair), pair


# --------------------------------------------------------------------------
# --registration open|closed|invite
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["closed", "invite"])
def test_a_closed_server_refuses_registrations_and_logs_accounts_in(start_server, mode) -> None:
    """`invite` without a code is refused like `closed` (protocol v1.2 section 8), each
    saying why."""
    before = start_server()
    assert _register(before, "alice", "a good password") == _ok("alice")
    assert before.stop() == 0
    server = start_server("--registration", mode)
    c = server.client()
    answer = _auth(c, "bob", "a good password")
    want = DEFAULT_MESSAGES[Code.REGISTRATION_CLOSED] if mode == "closed" else Refusal.INVITE_NEEDED
    assert answer == {"type": "error", "code": "registration_closed", "message": want}
    # Not a failed login: the connection stays in AUTH and may log in to an account.
    for _ in range(6):
        assert _auth(c, "bob", "a good password")["code"] == "registration_closed"
    assert _auth(c, "alice", "a good password", register=False) == _ok("alice")
    c.close()
    assert "registration refused fd=" in server.log() and f"--registration {mode}" in server.log()
    again = server.client()  # bob was never made
    assert _auth(again, "bob", "a good password", register=False)["code"] == "bad_credentials"
    again.close()


def test_an_unknown_registration_mode_is_one_line_exit_2(start_server) -> None:
    with pytest.raises(RuntimeError, match="exited with 2") as info:
        start_server("--registration", "sometimes")
    assert "--registration" in str(info.value)
