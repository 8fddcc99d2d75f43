"""A full server makes room for a real user at once (issue 17, item 9).

A real server on loopback, its slots filled by connections that never log in,
from several source addresses (every 127.x address is the loopback on Linux).
The rule (docs/server.md): a new connection evicts one that has not logged in,
whatever its age; never one whose login is being checked while another is
left; from the address with the most such connections; its oldest.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from server_support import PASSWORD, fatal, request, wait_for

from wire import Closed, WireClient


class From(WireClient):
    """A client that speaks from `source` (a loopback address of its own)."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""


def idler(server: Any, source: str) -> WireClient:
    """A connection that is accepted for sure (its ping was answered) and never logs in."""
    c = From(server.host, server.port, source)
    server.clients.append(c)
    assert request(c, {"type": "ping"}) == {"type": "pong"}
    return c


def still_there(c: WireClient) -> bool:
    try:
        return request(c, {"type": "ping"}) == {"type": "pong"}
    except (Closed, OSError):
        return False


def test_a_real_user_gets_in_at_once_on_a_server_full_of_idlers(start_server) -> None:
    # The old server evicted only connections older than half the login deadline (30 s
    # by default): until then a real user got server_full, again and again.
    server = start_server("--max-clients", "40")
    idlers = [idler(server, f"127.0.0.{2 + i % 8}") for i in range(40)]  # 8 addresses x 5
    user = From(server.host, server.port, "127.0.0.50")
    server.clients.append(user)
    user.login("real", PASSWORD)  # the first try: auth_ok, then the roster
    assert request(user, {"type": "ping"}) == {"type": "pong"}
    left = [still_there(c) for c in idlers]
    assert left.count(False) == 1, left
    gone = idlers[left.index(False)]
    assert gone.sock.getsockname()[0] == "127.0.0.2"  # the first address to have five
    assert left.index(False) == 0  # and its oldest
    assert "evicting" in server.log()


def test_a_user_alone_on_an_address_outlasts_a_flood_from_few_addresses(start_server) -> None:
    # The oldest connection is a real user's, slow to log in; a flood from two addresses
    # churns the slots. Eviction takes from the busiest address: never the user's.
    server = start_server("--max-clients", "20")
    user = idler(server, "127.0.0.50")  # connected first: the oldest of all
    flood = [idler(server, "127.0.0.2") for _ in range(19)]
    newcomers = [idler(server, "127.0.0.3") for _ in range(8)]  # each one got in at once
    assert still_there(user)
    # 8 evicted, all from .2 (19 down to 11, while .3 grew to 8), its oldest first.
    survivors = [still_there(c) for c in flood]
    assert survivors == [False] * 8 + [True] * 11, survivors
    assert all(still_there(c) for c in newcomers)
    user.login("slow", PASSWORD)
    assert request(user, {"type": "ping"}) == {"type": "pong"}


def test_a_connection_whose_login_is_being_checked_is_not_evicted(start_server) -> None:
    server = start_server("--max-clients", "4")
    # Make the account's checks take turns: 10 wrong passwords from elsewhere, so the
    # next check waits 2 s (0.25, 0.5, 1, 2 s past the free ones).
    for tries in (4, 4, 2):
        c = From(server.host, server.port, "127.0.0.9")
        for _ in range(tries):
            c.send({"type": "auth", "user": "target", "password": "wrong", "register": False})
            assert c.recv(timeout=10)["code"] == "bad_credentials"
        c.send({"type": "bye"})
        c.expect_closed()
        c.close()
    assert wait_for(lambda: len(re.findall(r"closed .*peer=127\.0\.0\.9:", server.log())) == 3)
    checking = idler(server, "127.0.0.2")  # the oldest, on the busiest address
    others = [idler(server, "127.0.0.2") for _ in range(3)]
    checking.send({"type": "auth", "user": "target", "password": "wrong", "register": False})
    time.sleep(0.3)  # its check waits for the account's turn (about 2 s)
    newcomer = idler(server, "127.0.0.3")  # full: someone goes
    fatal(others[0], "server_full")  # not the one being checked, though older
    answer = checking.recv(timeout=10)
    assert answer["type"] == "error" and answer["code"] == "bad_credentials", answer
    assert still_there(checking) and still_there(newcomer)
    assert all(still_there(c) for c in others[1:])


def test_no_limit_per_address_means_no_limit(start_server) -> None:
    # --max-unauth-per-addr 0 ("no limit") refused every connection with server_full.
    server = start_server("--max-unauth-per-addr", "0", "--max-clients", "10")
    clients = [idler(server, "127.0.0.2") for _ in range(10)]
    assert all(still_there(c) for c in clients)
    extra = From(server.host, server.port, "127.0.0.2")
    server.clients.append(extra)
    extra.login("member", PASSWORD)  # full: the oldest idler made room
    fatal(clients[0], "server_full")
