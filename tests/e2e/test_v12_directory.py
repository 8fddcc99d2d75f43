"""Protocol v1.2 section 7, the directory: `user_search` lists registered names by prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ServerProc
from e2e.server_support import assert_error
from e2e.v12_support import Session, login, module_server, register_all

#: Only "Ann" has a capital, and it sorts first by code point and ignoring case alike, so
#: "sorted" means one order here.
NAMES = [
    "Ann",
    "anna",
    "annie",
    "carla",
    "dora",
    *(f"yy{i:02d}" for i in range(50)),
    *(f"zz{i:02d}" for i in range(55)),
]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    for server in module_server(tmp_path_factory.mktemp("directory")):
        register_all(server, NAMES)
        yield server


@pytest.fixture(scope="module")
def carl(directory: ServerProc) -> Session:
    """A user online (the others are all offline), asking with every feature."""
    return login(directory, "carl")


def search(s: Session, prefix: Any) -> dict[str, Any]:
    answer = s.ask({"type": "user_search", "prefix": prefix})
    assert answer["type"] == "users", answer
    assert set(answer) == {"type", "id", "users", "more"}, answer
    return answer


@pytest.mark.parametrize(
    ("prefix", "users"),
    [
        ("an", ["Ann", "anna", "annie"]),
        ("AN", ["Ann", "anna", "annie"]),
        ("aNnI", ["annie"]),
        ("Ann", ["Ann", "anna", "annie"]),
        ("car", ["carl", "carla"]),  # carl is online, carla is not
        ("carl", ["carl", "carla"]),
        ("dora", ["dora"]),
        ("doras", []),
        ("zz5", [f"zz{i}" for i in range(50, 55)]),
        ("nobody", []),
        ("\u00e9", []),
        ("x" * 32, []),
    ],
)
def test_names_starting_with_the_prefix_ignoring_case_sorted(
    carl: Session, prefix: str, users: list[str]
) -> None:
    answer = search(carl, prefix)
    assert (answer["users"], answer["more"]) == (users, False)


def test_at_most_50_names_and_more_when_there_are_others(carl: Session) -> None:
    answer = search(carl, "zz")
    assert answer["users"] == [f"zz{i:02d}" for i in range(50)] and answer["more"] is True
    exactly = search(carl, "yy")
    assert exactly["users"] == [f"yy{i:02d}" for i in range(50)] and exactly["more"] is False


def test_an_empty_prefix_lists_the_first_50_names(carl: Session) -> None:
    everyone = sorted([*NAMES, "carl"])
    assert everyone == sorted(everyone, key=str.lower)  # one meaning of "sorted" here
    answer = search(carl, "")
    assert answer["users"] == everyone[:50] and answer["more"] is True


@pytest.mark.parametrize("prefix", ["x" * 33, 5, None, ["a"]])
def test_a_bad_prefix_is_bad_request_with_the_id(carl: Session, prefix: Any) -> None:
    carl.send({"type": "user_search", "id": "bad", "prefix": prefix})
    assert_error(carl.answer("bad"), "bad_request", "bad")
    carl.send({"type": "user_search", "id": 17})
    assert_error(carl.answer(17), "bad_request", 17)
    carl.sync()


@pytest.mark.parametrize("features", [None, []], ids=["no-field", "empty"])
def test_a_connection_without_features_may_search(
    directory: ServerProc, features: list[str] | None
) -> None:
    s = login(directory, "dora", features=features, register=False)
    assert search(s, "ANN")["users"] == ["Ann", "anna", "annie"]
    s.close()
