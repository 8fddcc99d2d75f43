"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes.

The decoder keeps one `bytearray` and a read offset, checks every length
header before buffering a body (so an oversized frame is refused from its
header alone, clarification 4), and hands out a whole frame or nothing.
"""

from __future__ import annotations

import struct

from .errors import Code, LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

#: Largest frame a server accepts unless configured otherwise (`--max-frame`).
DEFAULT_MAX_FRAME = 65536
#: Largest frame a server may send (a big roster); clients accept up to this.
MAX_SERVER_FRAME = 16 * 1024 * 1024

# Compact the buffer once this much consumed space sits before the offset.
_COMPACT_AT = 64 * 1024


def encode_frame(payload: bytes) -> bytes:
    """Prefix `payload` with its length; refuse what no peer could accept."""
    if not payload:
        raise LocalProtocolError("a frame cannot be empty")
    if len(payload) > MAX_SERVER_FRAME:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_SERVER_FRAME}")
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: `feed` any chunk, then pull frames with `next_frame`."""

    __slots__ = ("_buf", "_max_frame", "_off")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise LocalProtocolError("max_frame must be at least 1")
        self._buf = bytearray()
        self._off = 0
        self._max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._off

    def feed(self, data: bytes) -> None:
        if self._off and (self._off >= _COMPACT_AT or self._off == len(self._buf)):
            del self._buf[: self._off]
            self._off = 0
        self._buf += data

    def cut(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[bytes], RemoteProtocolError | None, int]:
        """Feed `data`, then every whole payload now buffered, the error that stopped the
        cut (fatal: the stream cannot be resynchronised) if any, and the bytes still
        buffered (a frame begun). One call per read: the loop's hot path.

        `data` may be a view of the caller's read buffer, reused after the call: what is
        kept (a frame begun) is copied. When nothing is buffered (the common case: a read
        ends where a frame ends) the payloads are cut straight from `data`, and only
        what is left of it is buffered, so a read's bytes are not copied twice."""
        if self._off < len(self._buf):  # a frame begun before: join it, then cut
            self.feed(data)
            frames: list[bytes] = []
            try:
                while (payload := self.next_frame()) is not None:
                    frames.append(payload)
            except RemoteProtocolError as err:
                return frames, err, len(self._buf) - self._off
            return frames, None, len(self._buf) - self._off
        frames = []
        size, off, max_frame, unpack = len(data), 0, self._max_frame, HEADER.unpack_from
        err = None
        while size - off >= HEADER_SIZE:
            (length,) = unpack(data, off)
            if length == 0:
                err = RemoteProtocolError(Code.BAD_FRAME, "zero-length frame")
                break
            if length > max_frame:
                err = RemoteProtocolError(
                    Code.FRAME_TOO_LARGE, f"frame of {length} bytes exceeds {max_frame}"
                )
                break
            end = off + HEADER_SIZE + length
            if end > size:
                break
            frames.append(bytes(data[off + HEADER_SIZE : end]))
            off = end
        # What is left (a frame begun, or the bytes from a bad header on) is buffered.
        self._buf[:] = data[off:]
        self._off = 0
        return frames, err, size - off

    def next_frame(self) -> bytes | None:
        """Return the next complete payload, or None until more bytes arrive.

        Raises RemoteProtocolError(bad_frame) for a zero length and
        RemoteProtocolError(frame_too_large) as soon as a header announces
        more than `max_frame`; after either the stream cannot be resynchronised.
        """
        buf, off = self._buf, self._off
        if len(buf) - off < HEADER_SIZE:
            return None
        (length,) = HEADER.unpack_from(buf, off)
        if length == 0:
            raise RemoteProtocolError(Code.BAD_FRAME, "zero-length frame")
        if length > self._max_frame:
            raise RemoteProtocolError(
                Code.FRAME_TOO_LARGE, f"frame of {length} bytes exceeds {self._max_frame}"
            )
        end = off + HEADER_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[off + HEADER_SIZE : end])
        self._off = end
        return payload
