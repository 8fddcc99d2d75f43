"""Every open transport and its I/O: TLS handshakes, reads cut into frames, writes, closes.

The loop thread alone calls in (net/loop.py). Reads: one `recv` per
readiness for TCP; for TLS until `SSLWantReadError`, because records already
decrypted in the TLS layer are invisible to epoll (cpython issue 65629), with
a 1 MiB budget per event and a zero-timeout turn for what is left. Frames are
cut by the listener's codec (`bad_frame` and `frame_too_large` are decided
from the header) and posted to the user's mailbox in arrival order. Writes:
TLS slots and what a full socket left behind. A connection whose mailbox lags
is not read until it catches up (TCP flow control then slows the sender).

It never changes protocol state: the peer's EOF or reset, a framing error and
every deadline are posted to the mailbox (`PeerGone`, `Abort`, `Evict`), and
the connection answers them in order with the frames before them. The I/O
lifecycle of each transport is the table in net/lifecycle.py.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from chat.server.core import native
from chat.server.core.results import Abort, Evict, PeerGone
from chat.server.net.inbox import Cause
from chat.server.net.lifecycle import Move, Phase
from chat.server.net.selector import TunedEpollSelector
from chat.server.net.transport import Transport
from chat.shared.errors import RemoteProtocolError, Why

log = logging.getLogger("chat.server")

_RECV_SIZE = 256 * 1024
_READ_BUDGET = 1024 * 1024  # bytes one readiness event may read (TLS reads until empty)
_BACKLOG_ITEMS = 512  # mailbox items after which a connection stops being read
_BACKLOG_BYTES = 256 * 1024  # or payload bytes: inbound memory is bounded too
_DRAINED = 64 * 1024  # a catch-up's next page is read once its buffer is down to this
_HUP_ERR = select.EPOLLHUP | select.EPOLLERR
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_OPEN, _CLOSED = Phase.OPEN, Phase.CLOSED


def errname(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return errno.errorcode.get(exc.errno or 0, str(exc))


class Connections:
    def __init__(
        self,
        selector: TunedEpollSelector,
        shutdown_grace: Callable[[], float],
        released: Callable[[Transport], None],
    ) -> None:
        """`released(t)` is told when a transport is closed (its slot and counts go back)."""
        self._selector = selector
        self._grace = shutdown_grace
        self._released = released
        self.by_cid: dict[int, Transport] = {}
        self.by_handle: dict[int, Transport] = {}
        self._paused: dict[int, Transport] = {}
        self._read_again: dict[int, Transport] = {}  # TLS data left in the TLS layer
        self._drain_waits: dict[int, Callable[[bool], None]] = {}  # cid -> catch-up callback
        self.closed_count = 0
        #: Read by the metrics at scrape time (ops/metrics.py); this thread alone adds.
        self.bytes_in = 0
        self.slow_readers = 0
        #: One read buffer for every plain-TCP read (the loop's thread alone reads): the
        #: decoder copies out what it keeps, so nothing of it outlives a read.
        self._rbuf = bytearray(_RECV_SIZE)
        self._rview = memoryview(self._rbuf)

    def __len__(self) -> int:
        return len(self.by_cid)

    @property
    def busy(self) -> bool:
        """Something is due at once: a TLS layer holding data, or a paused connection."""
        return bool(self._read_again or self._paused)

    @property
    def wait_hint(self) -> float | None:
        if self._read_again:
            return 0.0
        return 0.01 if self._paused else None

    def add(self, t: Transport) -> None:
        self.by_cid[t.cid] = t
        self.by_handle[t.user.out.handle] = t
        t.events = _READ
        self._selector.register(t.sock, _READ, t)
        if t.handshaking:
            self.handshake(t)

    # ---- events --------------------------------------------------------------------
    def on_event(self, t: Transport, events: int) -> None:
        phase = t.phase
        if phase is _CLOSED:
            return
        if t.handshaking:
            self.handshake(t)
            return
        if events & _READ or (events & _WRITE and t.read_wants_write):
            if phase is _OPEN and not t.paused:  # the common case: frames to read
                if t.tls:
                    self._read(t)
                else:
                    self._read_tcp(t)
            else:
                self._on_readable(t)
        if events & _WRITE and t.phase is not _CLOSED:
            self.write(t)

    def after_events(self) -> None:
        """What epoll cannot report: TLS records left decrypted, paused ones to resume."""
        if self._read_again:
            again, self._read_again = self._read_again, {}
            for t in again.values():
                if t.open and not t.paused:
                    self._read(t)
        if self._paused:
            self._check_paused()

    def handshake(self, t: Transport) -> None:
        sock = t.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            t.handshake_wants = _READ
        except ssl.SSLWantWriteError:
            t.handshake_wants = _WRITE
        except OSError as exc:  # ssl.SSLError is an OSError: a plain-TCP client, a bad hello
            self.close_now(t, f"TLS handshake failed: {errname(exc)}", Cause.BROKEN)
            return
        else:
            t.handshaking = False
            log.debug("TLS %s %s with %s", sock.version(), sock.cipher()[0], t.label())
            self.update_interest(t)
            self.write(t)  # a refusal may be waiting for the handshake
            if not t.closed:
                self._read_again[t.cid] = t  # the first frames may be in the TLS layer
            return
        self.update_interest(t)

    # ---- read ------------------------------------------------------------------------
    def _on_readable(self, t: Transport) -> None:
        if t.draining:
            self._drain(t)
        elif t.open and not t.paused:
            self._read(t)
        elif self._selector.last_masks.get(t.fd, 0) & _HUP_ERR:
            self.close_now(t, "connection reset", Cause.BROKEN)

    def _read_tcp(self, t: Transport) -> None:
        """Plain TCP: one recv into the loop's buffer (level-triggered: epoll reports the
        rest), cut where it lies."""
        try:
            got = t.sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            self._cut_frames(t, b"", 0, False)
            return
        except OSError as exc:
            self.close_now(t, errname(exc), Cause.BROKEN)
            return
        if got:
            t.last_rx = time.monotonic()
            self.bytes_in += got
            self._cut_frames(t, self._rview[:got], got, False)
        else:
            self._cut_frames(t, b"", 0, True)

    def _read(self, t: Transport) -> None:
        """Read what is there: one recv for TCP, until the TLS layer is empty for TLS."""
        sock = t.sock
        chunks: list[bytes] = []
        got = 0
        eof = False
        if t.read_wants_write:
            t.read_wants_write = False
            self.update_interest(t)
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                t.read_wants_write = True
                self.update_interest(t)
                break
            except OSError as exc:
                self.close_now(t, errname(exc), Cause.BROKEN)
                return
            if not data:
                eof = True
                break
            chunks.append(data)
            got += len(data)
            if not t.tls:
                break  # level-triggered: epoll reports the rest
            if got >= _READ_BUDGET:
                if sock.pending():  # type: ignore[attr-defined]
                    self._read_again[t.cid] = t  # epoll cannot see it
                break
        if got:
            t.last_rx = time.monotonic()
            self.bytes_in += got
        self._cut_frames(t, chunks[0] if len(chunks) == 1 else b"".join(chunks), got, eof)

    def _cut_frames(self, t: Transport, data: bytes | memoryview, got: int, eof: bool) -> None:
        decoder, mailbox = t.decoder, t.user.mailbox
        payloads, err, buffered = decoder.cut(data)
        items: list[Any] = payloads
        nbytes = sum(map(len, payloads))
        ending = err is not None
        if err is not None:  # fatal: the stream cannot be resynchronised
            items.append(Abort(err, f"{err.code}: {err.message}"))
        if items or not buffered:
            t.frame_started = t.last_rx if buffered else None
        elif got and t.frame_started is None:
            t.frame_started = t.last_rx
        if eof and not ending:
            items.append(PeerGone("EOF without bye"))
            ending = True
        if items:
            if ending:  # EOF or a framing error ends it: a catch-up stops first
                t.move(Move.END)
                self._cancel_drain_wait(t)
            mailbox.post(items, nbytes)
            if t.phase is _OPEN and (
                mailbox.size > _BACKLOG_BYTES or len(mailbox) > _BACKLOG_ITEMS
            ):
                t.paused = True
                self._paused[t.cid] = t
        if t.events != _READ or not t.reading or t.paused or t.write_pending or t.read_wants_write:
            self.update_interest(t)  # else: reading, nothing to write: nothing changes

    def _check_paused(self) -> None:
        for cid, t in list(self._paused.items()):
            mailbox = t.user.mailbox
            if t.closed or (
                len(mailbox) <= _BACKLOG_ITEMS // 2 and mailbox.size <= _BACKLOG_BYTES // 2
            ):
                del self._paused[cid]
                t.paused = False
                if not t.closed:
                    self.update_interest(t)
                    if t.tls:
                        self._read_again[cid] = t

    def _drain(self, t: Transport) -> None:
        """Drop what a closing peer still sends; close at its EOF."""
        try:
            data = t.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except OSError:
            data = b""
        if not data:
            reason, cause = t.closing or ("closed", Cause.US)
            self.close_now(t, reason, cause)

    # ---- write -----------------------------------------------------------------------
    def write(self, t: Transport) -> None:
        if not t.writes:
            return
        out = t.user.out
        if out.direct:
            status, err, left = out.flush()
        else:
            status, err = 0, 0
            try:
                left = out.write(t.send, t.chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                left = len(out)
            except OSError as exc:
                self.close_now(t, f"send failed: {errname(exc)}", Cause.BROKEN)
                return
        t.write_pending = left > 0
        if self._drain_waits and left <= _DRAINED and not status & native.S_OVERFLOW:
            then = self._drain_waits.pop(t.cid, None)
            if then is not None:
                then(True)
        if not status and not left and t.events == _READ and t.phase is Phase.OPEN:
            return  # the common case: all written, still reading, nothing to change
        self.flushed(t, status & ~native.S_LOOP, err)

    def flushed(self, t: Transport, status: int, err: int) -> None:
        """Act on what a flush (a worker's or ours) reported for `t`."""
        if status & native.S_LOOP:  # a TLS slot: this thread writes it
            self.write(t)
            return
        if status & native.S_ERROR:
            self.close_now(t, f"send failed: {errno.errorcode.get(err, err)}", Cause.BROKEN)
            return
        if status & native.S_LEFT:  # a worker's flush met a full socket: wait for EPOLLOUT
            t.write_pending = True
        if status & native.S_OVERFLOW and t.open:
            t.move(Move.END)
            self.slow_readers += 1
            self.post_end(t, Evict(Why.SLOW_READER))
        if t.phase is Phase.CLOSING and not t.write_pending:  # the final frame is out
            self._start_draining(t)
        else:
            self.update_interest(t)

    def update_interest(self, t: Transport) -> None:
        if t.closed:
            return
        if t.handshaking:
            events = t.handshake_wants
        else:
            events = (_READ if t.reads else 0) | (
                _WRITE if t.write_pending or t.read_wants_write else 0
            )
        if events != t.events:
            self._selector.modify(t.sock, events, t)
            t.events = events

    def when_drained(self, cid: int, then: Callable[[bool], None]) -> None:
        """Call `then(True)` once the slot is written down to 64 KiB, `then(False)` as soon
        as the connection is ending."""
        t = self.by_cid.get(cid)
        if t is None or not t.open:
            then(False)
        else:
            self._drain_waits[cid] = then
            self.write(t)

    # ---- ending ----------------------------------------------------------------------
    def expire(self, t: Transport, err: RemoteProtocolError, reason: str) -> None:
        """End `t` with a fatal error frame, built by its connection in its mailbox."""
        if not t.open:
            return
        t.move(Move.END)
        self.update_interest(t)
        self.post_end(t, Abort(err, reason))

    def end_user(self, name: str, why: str, keep: int | None = None) -> int:
        """End every connection logged in as `name` but `keep` with a `bye` saying `why`
        (ops/commands.py), built in its mailbox; how many."""
        ended = 0
        for t in list(self.by_cid.values()):
            if t.open and t.user.name == name and t.cid != keep:
                t.move(Move.END)
                self.update_interest(t)
                self.post_end(t, Evict(why))
                ended += 1
        return ended

    def close_after_flush(self, t: Transport, reason: str, cause: Cause) -> None:
        """The connection sent its final frame: close once it is out (lingering close)."""
        if t.phase not in (Phase.OPEN, Phase.ENDING):
            return
        self._closing(t, reason, cause)

    def shut(self, t: Transport, reason: str) -> None:
        """Shutdown: every transport closes after its `bye` (a close under way becomes the
        shutdown's)."""
        if t.phase in (Phase.OPEN, Phase.ENDING, Phase.CLOSING):
            self._closing(t, reason, Cause.US)

    def _closing(self, t: Transport, reason: str, cause: Cause) -> None:
        t.move(Move.CLOSE_AFTER_FLUSH)
        t.closing = (reason, cause)
        t.linger_deadline = time.monotonic() + self._grace()
        self.write(t)  # during a TLS handshake: once it is done, or at the deadline

    def _start_draining(self, t: Transport) -> None:
        """Send FIN, then read and drop until the peer's EOF.

        Closing a socket that still has unread input makes the kernel send an
        RST, which can destroy the final frame (an error or a bye) before the
        peer reads it. Shutting down our side first delivers it, then EOF.
        """
        t.move(Move.FINAL_OUT)
        with contextlib.suppress(OSError):
            t.sock.shutdown(socket.SHUT_WR)
        self.update_interest(t)

    def close_now(self, t: Transport, reason: str, cause: Cause) -> None:
        if t.closed:
            return
        told = t.phase in (Phase.CLOSING, Phase.DRAINING)  # the connection ended it itself
        t.move(Move.CLOSE)
        del self.by_cid[t.cid]
        self.by_handle.pop(t.user.out.handle, None)
        self._paused.pop(t.cid, None)
        self._read_again.pop(t.cid, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(t.sock)
        t.user.out.close()  # first: from here on no worker's flush uses the fd
        t.sock.close()
        self._released(t)
        self.closed_count += 1
        log.info("closed %s %s: %s", t.label(), cause.value, reason)
        if not told:  # the loop ended it: the connection still has to know
            self.post_end(t, PeerGone(reason, cause))
        else:
            self._cancel_drain_wait(t)

    def post_end(self, t: Transport, item: Abort | Evict | PeerGone) -> None:
        """Tell a connection it is ending; a catch-up waiting for a drain stops first."""
        self._cancel_drain_wait(t)
        t.user.mailbox.post([item])

    def _cancel_drain_wait(self, t: Transport) -> None:
        then = self._drain_waits.pop(t.cid, None)
        if then is not None:
            then(False)
