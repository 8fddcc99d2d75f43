"""Which connection not logged in goes when the server is full (unauth.py)."""

from __future__ import annotations

import random

import pytest

from chat.server.net.unauth import NotLoggedIn


def _table(*ips: str) -> NotLoggedIn[str]:
    """Connections 1, 2, ... from `ips`, in that order (the item is "cid@ip")."""
    table: NotLoggedIn[str] = NotLoggedIn()
    for cid, ip in enumerate(ips, 1):
        table.add(cid, ip, f"{cid}@{ip}")
    return table


def _idle(item: str) -> bool:
    return False


def test_the_oldest_of_the_address_with_the_most_goes_first() -> None:
    table = _table("lone", "a", "b", "a", "b", "a")
    assert table.victim(_idle) == "2@a"  # a has 3, b 2, lone 1: a's oldest
    table.pop(2)
    assert table.victim(_idle) in {"4@a", "3@b"}  # 2 and 2: either address's oldest
    table.pop(4)
    assert table.victim(_idle) == "3@b"
    table.pop(3)
    table.pop(5)
    assert table.victim(_idle) in {"1@lone", "6@a"}
    assert table.count("a") == 1 and table.count("b") == 0 and len(table) == 2


def test_a_connection_whose_login_is_being_checked_goes_only_when_none_else_is_left() -> None:
    table = _table("a", "a", "a", "b")
    checking = {"1@a", "2@a"}
    assert table.victim(lambda item: item in checking) == "3@a"
    checking = {"1@a", "2@a", "3@a"}
    assert table.victim(lambda item: item in checking) == "4@b"
    everyone = {"1@a", "2@a", "3@a", "4@b"}
    assert table.victim(lambda item: item in everyone) == "1@a"  # by the same order


def test_the_search_is_bounded_by_its_budget() -> None:
    table = _table(*["a"] * 100, "b")
    looked: list[str] = []

    def busy(item: str) -> bool:
        looked.append(item)
        return item.endswith("@a")

    assert table.victim(busy, budget=10) == "1@a"  # all ten looked at were busy
    assert len(looked) == 10


def test_an_empty_table_has_no_victim_and_counts_stay_right_under_churn() -> None:
    assert NotLoggedIn[str]().victim(_idle) is None
    rng = random.Random(7)
    table: NotLoggedIn[str] = NotLoggedIn()
    live: dict[int, str] = {}
    for cid in range(1, 5000):
        if live and rng.random() < 0.45:
            gone = rng.choice(list(live))
            assert table.pop(gone) == f"{gone}@{live.pop(gone)}"
        ip = f"10.0.0.{rng.randrange(12)}"
        table.add(cid, ip, f"{cid}@{ip}")
        live[cid] = ip
        if cid % 97 == 0:
            counts = {ip: list(live.values()).count(ip) for ip in set(live.values())}
            victim = table.victim(_idle)
            assert victim is not None
            vcid, vip = victim.split("@")
            assert counts[vip] == max(counts.values())
            assert int(vcid) == min(c for c, i in live.items() if i == vip)  # its oldest
    assert len(table) == len(live)
    assert table.pop(10**9) is None
    with pytest.raises(ValueError):
        table.add(next(iter(live)), "x", "again")
