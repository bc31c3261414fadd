"""HTTP/2 framing of one direction's bytes (RFC 9113 section 4): frames split out across any chunk boundaries.

`FrameReader` tells its owner of three things: complete header blocks (a
HEADERS or PUSH_PROMISE frame joined with its CONTINUATIONs, padding and
priority fields stripped), the end of each DATA frame with its payload size
less padding (counted by index arithmetic: DATA is never copied, sliced or
scanned), and the control frames a tracker needs (RST_STREAM, SETTINGS,
GOAWAY). PING, WINDOW_UPDATE, PRIORITY and unknown types are skipped by
counting. Bytes that cannot be HTTP/2 framing raise `FrameError`. Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # the client's connection preface (section 3.4)

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

_PLAIN_MASK: Final = END_HEADERS | PADDED | PRIORITY_FLAG
_HEAD: Final = struct.Struct(">BHBBL")  # length (8 + 16 bits), type, flags, R + stream id
_STREAM_MASK: Final = 0x7FFFFFFF
_GOAWAY_KEPT: Final = 8  # last-stream-id and error code; the debug data after them is skipped
# Frames whose payload length is fixed (section 6): anything else is a connection error.
_FIXED: Final = {RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4, PRIORITY: 5}
_ON_STREAM: Final = frozenset((DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION))
_ON_CONNECTION: Final = frozenset((SETTINGS, PING, GOAWAY))

# What the reader does with the rest of the current frame's payload.
_SKIP: Final = 0  # count it (DATA, PING, WINDOW_UPDATE, PRIORITY, unknown types)
_KEEP: Final = 1  # gather it, then handle the whole frame
_PAD: Final = 2  # the next byte is a DATA frame's pad length; the rest is skipped

HeadersCallback = Callable[[int, int, bytes, int], None]  # (stream id, flags, block, promised stream id or 0)
DataCallback = Callable[[int, int, int], None]  # (stream id, flags, payload size less padding)
ControlCallback = Callable[[int, int, int, bytes], None]  # (type, flags, stream id, payload)


class FrameError(ValueError):
    """The bytes are not HTTP/2 framing that can be followed."""


class FrameReader:
    """Splits one direction's byte stream into frames; calls back as each header block, DATA or control frame ends.

    `client=True` expects the connection preface first. A header block is
    bounded by `max_block` bytes (compressed), a kept control frame by the
    same. After a `FrameError` the reader's state is undefined: stop feeding it.
    """

    def __init__(self, on_headers: HeadersCallback, on_data: DataCallback, on_control: ControlCallback, *,
                 client: bool, max_block: int) -> None:
        self._on_headers = on_headers
        self._on_data = on_data
        self._on_control = on_control
        self.max_block = max_block
        self._preface_left = len(PREFACE) if client else 0
        self._head = bytearray()  # a frame header split across chunks
        # The frame being read: its header, how many payload bytes are still to come, and what to do with them.
        self._type = 0
        self._flags = 0
        self._sid = 0
        self._length = 0
        self._left = 0
        self._mode = _SKIP
        self._pad = 0
        self._keep = 0  # how many payload bytes _KEEP gathers (GOAWAY keeps only its first 8)
        self._buf = bytearray()  # a _KEEP frame's payload split across chunks
        # A header block awaiting CONTINUATION frames (section 6.10).
        self._block: bytearray | None = None
        self._block_sid = 0
        self._block_flags = 0
        self._block_promised = 0

    def feed(self, data: bytes) -> None:
        """Read the next bytes of this direction, any amount."""
        pos = self._check_preface(data) if self._preface_left else 0
        n = len(data)
        while pos < n:
            left = self._left
            if left:  # inside a payload begun in an earlier chunk (or just now)
                mode = self._mode
                take = left if left <= n - pos else n - pos
                if mode == _KEEP:
                    room = self._keep - len(self._buf)
                    if room > 0:
                        self._buf += data[pos:pos + (take if take <= room else room)]
                elif mode == _PAD:
                    take = 1
                    self._pad = data[pos]
                    self._mode = _SKIP
                pos += take
                self._left = left = left - take
                if not left:
                    self._end_frame()
                continue
            head = self._head
            if not head and n - pos >= 9 and self._block is None:
                # The commonest frames, whole in this chunk: DATA and a one-frame HEADERS with
                # neither padding nor priority, handled here without the general path's calls.
                hi, lo, ftype, flags, sid = _HEAD.unpack_from(data, pos)
                end = pos + 9 + (hi << 16 | lo)
                sid &= _STREAM_MASK
                if end <= n and sid:
                    if ftype == DATA and not flags & PADDED:
                        self._on_data(sid, flags, end - pos - 9)
                        pos = end
                        continue
                    if ftype == HEADERS and flags & _PLAIN_MASK == END_HEADERS and end - pos - 9 <= self.max_block:
                        self._on_headers(sid, flags, data[pos + 9:end], 0)
                        pos = end
                        continue
            if head or n - pos < 9:  # a frame header split across chunks
                need = 9 - len(head)
                head += data[pos:pos + need]
                pos += need
                if len(head) < 9:
                    return
                hi, lo, ftype, flags, sid = _HEAD.unpack(head)
                head.clear()
            else:
                hi, lo, ftype, flags, sid = _HEAD.unpack_from(data, pos)
                pos += 9
            length = hi << 16 | lo
            sid &= _STREAM_MASK
            self._begin(ftype, flags, sid, length)
            if length and self._mode != _PAD and length <= n - pos:  # the whole payload is here: no gathering
                if self._mode == _KEEP:
                    self._complete(data[pos:pos + self._keep])
                elif ftype == DATA:
                    self._on_data(sid, flags, length)
                pos += length
                self._left = 0
            elif not length:
                self._end_frame()

    def _check_preface(self, data: bytes) -> int:
        done = len(PREFACE) - self._preface_left
        take = min(self._preface_left, len(data))
        if data[:take] != PREFACE[done:done + take]:
            raise FrameError("the client's bytes do not begin with the HTTP/2 connection preface")
        self._preface_left -= take
        return take

    def _begin(self, ftype: int, flags: int, sid: int, length: int) -> None:
        """A frame header was read: check it and decide what its payload is for."""
        if self._block is not None and ftype != CONTINUATION:
            raise FrameError(f"frame type {ftype} inside a header block (CONTINUATION expected)")
        if ftype in _ON_STREAM:
            if not sid:
                raise FrameError(f"frame type {ftype} on stream 0")
        elif ftype in _ON_CONNECTION and sid:
            raise FrameError(f"frame type {ftype} on stream {sid}, not on the connection")
        fixed = _FIXED.get(ftype)
        if fixed is not None and length != fixed:
            raise FrameError(f"frame type {ftype} of {length} bytes, not {fixed}")
        self._type, self._flags, self._sid, self._length, self._left = ftype, flags, sid, length, length
        if ftype == DATA:
            self._pad = 0
            self._mode = _PAD if flags & PADDED and length else _SKIP
        elif ftype in (HEADERS, CONTINUATION, PUSH_PROMISE, SETTINGS, RST_STREAM):
            if length > self.max_block:
                raise FrameError(f"a frame of type {ftype} of {length} bytes (at most {self.max_block} followed)")
            self._mode = _KEEP
            self._keep = length
            self._buf.clear()
        elif ftype == GOAWAY:
            if length < _GOAWAY_KEPT:
                raise FrameError(f"GOAWAY of {length} bytes")
            self._mode = _KEEP
            self._keep = _GOAWAY_KEPT
            self._buf.clear()
        else:
            self._mode = _SKIP

    def _end_frame(self) -> None:
        """The last byte of a frame gathered across chunks (or of an empty frame) was read."""
        if self._type == DATA:
            size = self._length
            if self._flags & PADDED:
                size -= 1 + self._pad
                if size < 0:
                    raise FrameError("DATA padding longer than the frame")
            self._on_data(self._sid, self._flags, size)
        elif self._mode == _KEEP:
            payload = bytes(self._buf)
            self._buf.clear()
            self._complete(payload)

    def _complete(self, payload: bytes) -> None:
        """A kept frame's whole payload."""
        ftype, flags, sid = self._type, self._flags, self._sid
        if ftype in (HEADERS, PUSH_PROMISE):
            self._fragment(ftype, flags, sid, payload)
        elif ftype == CONTINUATION:
            block = self._block
            if block is None or sid != self._block_sid:
                raise FrameError(f"CONTINUATION on stream {sid} with no header block open there")
            block += payload
            if len(block) > self.max_block:
                raise FrameError(f"a header block of more than {self.max_block} bytes")
            if flags & END_HEADERS:
                self._block = None
                self._on_headers(sid, self._block_flags, bytes(block), self._block_promised)
        else:
            self._on_control(ftype, flags, sid, payload)

    def _fragment(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        """The header block fragment of a HEADERS or PUSH_PROMISE frame: padding, priority and promised id off."""
        start, pad, promised = 0, 0, 0
        if flags & PADDED:
            if not payload:
                raise FrameError("a padded frame with no pad length")
            pad = payload[0]
            start = 1
        if ftype == PUSH_PROMISE:
            if len(payload) < start + 4:
                raise FrameError("PUSH_PROMISE without a promised stream id")
            promised = int.from_bytes(payload[start:start + 4], "big") & _STREAM_MASK
            if not promised:
                raise FrameError("PUSH_PROMISE of stream 0")
            start += 4
        elif flags & PRIORITY_FLAG:
            start += 5
        end = len(payload) - pad
        if end < start:
            raise FrameError("padding and priority longer than the frame")
        fragment = payload if start == 0 and pad == 0 else payload[start:end]
        if flags & END_HEADERS:
            self._on_headers(sid, flags, fragment, promised)
        else:
            self._block = bytearray(fragment)
            self._block_sid, self._block_flags, self._block_promised = sid, flags, promised
