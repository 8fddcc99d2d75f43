"""A transport's I/O lifecycle, as a table: every phase and every legal move between them.

The protocol's states (`AUTH -> ROSTER -> CHAT -> CLOSED`) belong to the
user (chat.shared.states); these are the socket's, which the loop alone
moves:

- OPEN: frames are read and written.
- ENDING: an end was posted to the connection's mailbox (EOF, a framing error,
  a deadline, a slow reader): nothing more is read; what the connection
  answers (the frames before an EOF, its final error or `bye`) is still written.
- CLOSING: the final frame is queued; the loop writes until it is out, within
  `--shutdown-grace`.
- DRAINING: the final frame is out and our side is shut (FIN); the loop reads
  and drops until the peer's EOF, so the kernel sends no RST that could destroy
  the final frame (docs/server.md, "Closing").
- CLOSED: the socket is closed and the slot free.

A TLS handshake in progress is not a phase: it is the TLS layer not being
ready (`Transport.handshaking`), which delays reads and writes in any phase.
"""

from __future__ import annotations

from enum import Enum

from chat.shared.errors import LocalProtocolError


class Phase(Enum):
    OPEN = "open"
    ENDING = "ending"
    CLOSING = "closing"
    DRAINING = "draining"
    CLOSED = "closed"


class Move(Enum):
    END = "end posted"  # the loop told the mailbox the connection is ending
    CLOSE_AFTER_FLUSH = "close after flush"  # the mailbox queued the final frame
    FINAL_OUT = "final frame out"  # written: shut our side, drain
    CLOSE = "close"  # now, for any reason


TRANSITIONS: dict[tuple[Phase, Move], Phase] = {
    (Phase.OPEN, Move.END): Phase.ENDING,
    (Phase.OPEN, Move.CLOSE_AFTER_FLUSH): Phase.CLOSING,
    (Phase.ENDING, Move.CLOSE_AFTER_FLUSH): Phase.CLOSING,
    # Shutdown: a close under way becomes the shutdown's (its reason replaced).
    (Phase.CLOSING, Move.CLOSE_AFTER_FLUSH): Phase.CLOSING,
    (Phase.CLOSING, Move.FINAL_OUT): Phase.DRAINING,
    **{(phase, Move.CLOSE): Phase.CLOSED for phase in Phase},
}

#: Phases in which the socket is read: frames (OPEN) or dropped bytes (DRAINING).
READING: frozenset[Phase] = frozenset({Phase.OPEN, Phase.DRAINING})
#: Phases in which queued bytes are written.
WRITING: frozenset[Phase] = frozenset({Phase.OPEN, Phase.ENDING, Phase.CLOSING})


def next_phase(phase: Phase, move: Move) -> Phase:
    try:
        return TRANSITIONS[(phase, move)]
    except KeyError:
        raise LocalProtocolError(f"transport: no move '{move.value}' from {phase.value}") from None
