"""`Side`: one end of a proxied connection (the client's, or the app's) as an asyncio protocol over its transport.

The relay is driven by the transports' callbacks, not by coroutines: each
chunk a transport reads goes to the connection's handler at once, which
writes it to the other side's transport in the same call (the transport
sends what the socket takes and keeps the rest). Back-pressure: when a
side's write buffer passes its high-water mark (`HIGH_WATER`), the other
side stops reading until it drains, so a slow reader slows the writer and
each direction holds at most about one read plus `HIGH_WATER` bytes. Why
not Tornado's `IOStream`: its futures and callbacks per read and per write
cost more than the rest of the sidecar's work per exchange (see the
README's "Speed").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Final, cast

CHUNK: Final = 65536  # the unit of what a side holds back: write buffers, bytes read while the relay waits
HIGH_WATER: Final = CHUNK  # a side's write buffer past this pauses reading on the other side
# Why a side's reading is paused (bits: it reads again once none is left).
BACKPRESSURE: Final = 1  # the other side's write buffer is full
WAITING: Final = 2  # the relay holds what came (behind an Upgrade, after a refusal) and has enough of it
CONNECTING: Final = 4  # bytes for the app wait for its connection


def _ignored(*args: object) -> None:
    """What a lost side does with anything: nothing."""


class Side:
    """One end's transport and the handlers of what it reads; `peer` is the other end, whose reading its
    write buffer's fill pauses and resumes.

    An asyncio protocol by its methods, not by inheritance: both loops only call them, and a class with
    a Python base (asyncio.Protocol) is one mypyc cannot compile to a native class. So the loops are
    handed it typed as `Any` (`sidecar.proxy`, `sidecar.app_link`)."""

    __slots__ = ("_on_eof", "_on_error", "_on_lost", "_on_made", "holds", "on_data", "peer", "transport")

    transport: asyncio.Transport  # set once connected: nothing calls a side before

    def __init__(self, on_made: Callable[[Side], None], on_data: Callable[[bytes], None],
                 on_eof: Callable[[], None], on_lost: Callable[[Exception | None], None],
                 on_error: Callable[[], None]) -> None:
        self.peer: Side | None = None
        self.holds = 0  # why reading is paused (BACKPRESSURE | WAITING), 0 while it reads
        self.on_data = on_data  # swapped by the connection as it learns how to relay
        self._on_made, self._on_eof, self._on_lost, self._on_error = on_made, on_eof, on_lost, on_error

    # --- the transport's callbacks ---------------------------------------------------------
    # Each hands what it raises to `on_error` (which logs it and closes the connection): the loop would
    # only log it and close this one transport.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses; they have its methods.) Both loops
        # set TCP_NODELAY on their TCP transports themselves.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER)
        try:
            self._on_made(self)
        except Exception:
            self._on_error()

    def data_received(self, data: bytes) -> None:
        try:
            self.on_data(data)
        except Exception:
            self._on_error()

    def eof_received(self) -> bool:
        try:
            self._on_eof()
        except Exception:
            self._on_error()
        return True  # the handler closed what is to be closed; the transport must not close itself

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._on_lost(exc)
        except Exception:
            self._on_error()
        # Nothing calls a lost side again. Its handlers are the connection's bound methods, and the
        # connection holds its sides: dropped, that cycle is gone and the connection is freed at once,
        # not at the collector's next pass (which the sidecar spaces out: sidecar.main).
        self.on_data = self._on_eof = self._on_error = _ignored
        self._on_made = self._on_lost = _ignored
        self.peer = None

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.hold(BACKPRESSURE)

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.release(BACKPRESSURE)

    # --- what the connection calls -----------------------------------------------------------

    def hold(self, why: int) -> None:
        """Stop reading for `why` (BACKPRESSURE, WAITING or CONNECTING), until `release(why)`."""
        if not self.holds and not self.transport.is_closing():
            self.transport.pause_reading()
        self.holds |= why

    def release(self, why: int) -> None:
        if self.holds & why:
            self.holds &= ~why
            if not self.holds and not self.transport.is_closing():
                self.transport.resume_reading()

    def shut(self, flush: bool) -> None:
        """Close: after what is buffered has gone out (`flush`), or at once, dropping it."""
        transport = self.transport
        if not flush:
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    def read_out(self, limit: int) -> bytes:
        """What the peer sent that the kernel holds and the transport has not read yet (up to `limit`):
        for a last look before closing. Reads the socket behind the transport's back, so only then."""
        transport = self.transport
        sock = transport.get_extra_info("socket")
        if sock is None or transport.is_closing():
            return b""
        got: list[bytes] = []
        fd, size = sock.fileno(), 0
        while size < limit:
            try:
                data = os.read(fd, CHUNK)  # the socket does not block (both loops set it so)
            except OSError:  # nothing more (BlockingIOError), or reset
                break
            if not data:
                break
            got.append(data)
            size += len(data)
        return b"".join(got)
