"""What every contract suite shares: the key, the cipher, a real redis-server, waiting.

Each seam of the core (store, accounts, presence, broker: docs/server.md) has two
implementations, one for a server alone and one for a node of a cluster over Redis;
each suite here runs one contract against both. The Redis variants use the real
`redis-server` of tests/cluster/conftest.py (a private port, no persistence,
stopped by PID) and skip, saying why, where it is not installed (CI installs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chat.server.cluster.box import Box
from chat.server.crypto.cipher import Cipher, load_cipher

# The fixtures of tests/cluster/conftest.py, imported so that pytest offers them here: each
# suite's Redis part runs against one redis-server and against a Redis Cluster.
from cluster.conftest import (  # noqa: F401
    KINDS,
    AnyRedis,
    RedisProc,
    _shared_cluster,
    at_rest,
    redis_kind,
    redis_of,
    redis_server,
    start_redis,
)

#: A seam's implementations: the server alone's, and the Redis one on each kind of Redis.
IMPLEMENTATIONS = ("alone", *KINDS)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
#: Threads of the seams' implementations: none may outlive its part's stop().
OWN_THREADS = ("cluster-", "store-")


@pytest.fixture(scope="session")
def cipher() -> Cipher:
    return load_cipher()


@pytest.fixture
def box(cipher: Cipher) -> Box:
    return Box(KEY, cipher)


def wait_until(check: Callable[[], object], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Whether `check()` became true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def own_threads() -> list[str]:
    """The seams' threads alive now."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(OWN_THREADS))


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """After every test (its parts stopped by their fixtures): none of their threads runs."""
    before = own_threads()
    yield
    assert own_threads() == before, "a part's thread outlived its stop()"


def freeze(redis: AnyRedis) -> Callable[[], None]:
    """SIGSTOP the redis-server (it neither answers nor closes); the function thaws it."""
    import signal

    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)
    return lambda: redis.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
