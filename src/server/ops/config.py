"""Everything the server can be told (command line or config file), in one frozen record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chat.server.net.listeners import ListenSpec
from chat.shared.framing import DEFAULT_MAX_FRAME


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = ""
    port: int = 7777
    threads: int = 4
    max_clients: int = 1024
    epoll_timeout_ms: int = 1000
    max_events: int = 256
    #: Where the key, the users file and the message store live by default.
    data_dir: Path = Path(".")
    users_file: Path = Path("users.db")
    key_file: Path = Path("server.key")
    history_file: Path = Path("history.db")
    #: Days a message is kept (history and offline queues); 0 keeps them for ever.
    history_days: float = 30.0
    #: Offline messages kept per user; past it the oldest go (and the log says so).
    offline_max: int = 1000
    #: False: keep no messages at all (no history, nothing queued): benchmarks, ephemeral chat.
    keep_messages: bool = True
    #: A lost message store (missing or empty next to accounts) may be started anew.
    new_history_store: bool = False
    #: A Redis URL: this process is one node of a cluster (docs/cluster.md); None: alone.
    cluster: str | None = None
    cipher_lib: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_frame: int = DEFAULT_MAX_FRAME
    ack_timeout: float = 30.0
    idle_timeout: float = 300.0
    #: A login (TLS handshake included) must finish this long after accept.
    auth_timeout: float = 60.0
    #: A frame whose header has arrived must be complete this long after (slowloris).
    frame_timeout: float = 30.0
    max_outbuf: int = 4 * 1024 * 1024
    #: All connections' outbound buffers together; past it the biggest buffers are dropped.
    max_total_outbuf: int = 256 * 1024 * 1024
    #: Connections not yet logged in from one peer address (0 = no limit).
    max_unauth_per_addr: int = 256
    rate_limit: float = 500.0  # sends per second per connection; 0 disables
    rate_burst: int = 1000
    hash_cost: int = 14  # scrypt log2(N)
    #: Threads that run scrypt, apart from the workers, and the logins that may wait for them.
    hash_threads: int = len(os.sched_getaffinity(0)) or 1  # one per core (issue 22)
    hash_queue: int = 256
    #: The shortest password a registration may choose (the contract's bound is 1; an
    #: existing account with a shorter one still logs in).
    min_password: int = 1
    #: Refuse a new name equal to an existing one ignoring case (`Alice` when `alice`
    #: exists); names stay case-sensitive for everything else.
    refuse_case_variants: bool = False
    #: Days a login token is good for (`resume`, protocol v1.2 section 6), from its issue;
    #: checked against the value at each token login, so a reload shortens old tokens too.
    token_days: float = 30.0
    #: The longest wait between two password checks of one account (or one address) once
    #: past its free failures; the waits double from 0.25 s up to it (throttle.py).
    login_delay: float = 2.0
    shutdown_grace: float = 2.0
    backlog: int = 1024
    #: Rooms a user may be in, members a room may have (v1.2 section 2; docs/protocol.md).
    max_rooms_per_user: int = 200
    max_room_members: int = 10_000
    #: `--listen` (repeatable): every address the server listens on; empty: the short
    #: form, `--host`/`--port`, TLS when `--tls-cert` is given.
    listen: tuple[ListenSpec, ...] = ()
    #: Who may register: `open` (anyone), `closed` (no one), `invite` (with a code made by
    #: `chat-server invite create`). A reload changes it.
    registration: str = "open"
    #: `--metrics HOST:PORT`: where /metrics and /healthz are served (None: nowhere).
    metrics: tuple[str, int] | None = None

    def listeners(self) -> tuple[ListenSpec, ...]:
        """Every listener: the `--listen` ones, or the one of `--host`/`--port`."""
        if self.listen:
            return self.listen
        return (ListenSpec(self.host, self.port, self.tls_cert is not None),)
