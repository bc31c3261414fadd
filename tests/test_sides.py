"""`sidecar.sides.Side`: one end of a relayed connection on a real loopback transport: holds pause and resume its
reading, a full write buffer pauses its peer, what is closed with `flush` still arrives, `read_out` finds what the
kernel holds; on asyncio's default loop and on uvloop's."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from sidecar.sides import BACKPRESSURE, CHUNK, CONNECTING, WAITING, Side

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Recorder:
    """A side whose callbacks note what happened."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []
        self.errors = 0
        self.side = Side(lambda side: None, self.data.extend, self._eof, self.lost.append, self._error)

    def _eof(self) -> None:
        self.eof = True

    def _error(self) -> None:
        self.errors += 1


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    loop = LOOPS[request.param]()
    yield loop
    loop.close()


async def connected(loop: asyncio.AbstractEventLoop) -> tuple[Recorder, socket.socket]:
    """A Side on a transport connected to a plain socket (the peer, whose buffers are kept small)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    rec = Recorder()
    try:
        await loop.create_connection(lambda: rec.side, *listener.getsockname())
        peer, _ = listener.accept()
    finally:
        listener.close()
    peer.setblocking(False)
    return rec, peer


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def read_to_end(peer: socket.socket) -> bytes:
    """What the non-blocking `peer` receives until the other end closes (or resets)."""
    received = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_held_reading_reads_nothing_until_every_hold_is_released(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        rec, peer = await connected(loop)
        rec.side.hold(WAITING)
        rec.side.hold(CONNECTING)
        peer.send(b"early")
        await asyncio.sleep(0.05)
        assert rec.data == b""
        rec.side.release(WAITING)
        await asyncio.sleep(0.05)
        assert rec.data == b"" and rec.side.holds == CONNECTING  # one hold left: still not read
        rec.side.release(CONNECTING)
        await until(lambda: rec.data == b"early")
        rec.side.release(WAITING)  # releasing what is not held changes nothing
        assert rec.side.holds == 0
        peer.close()
        await until(lambda: rec.eof)
        rec.side.shut(False)
        await until(lambda: rec.lost)

    loop.run_until_complete(run())


def test_a_full_write_buffer_pauses_the_peer_until_it_drains(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        writer, reader_peer = await connected(loop)
        other, _other_peer = await connected(loop)
        writer.side.peer = other.side
        blob = b"x" * (CHUNK // 2)
        while writer.side.transport.get_write_buffer_size() <= CHUNK:  # the peer reads nothing: the buffer fills
            writer.side.transport.write(blob)
            await asyncio.sleep(0)
        assert other.side.holds == BACKPRESSURE
        got = 0
        while other.side.holds:  # the peer reads: below the low-water mark the other side reads again
            with contextlib.suppress(BlockingIOError):
                got += len(reader_peer.recv(1 << 20))
            await asyncio.sleep(0.001)
        assert got > 0 and writer.side.transport.get_write_buffer_size() <= CHUNK // 4
        for side in (writer.side, other.side):
            side.shut(False)
        reader_peer.close()
        _other_peer.close()

    loop.run_until_complete(run())


def test_shut_with_flush_delivers_what_is_buffered_and_without_drops_it(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        rec, peer = await connected(loop)
        blob = bytes(range(256)) * 32768  # 8 MiB: more than the kernel takes at once
        rec.side.transport.write(blob)
        assert rec.side.transport.get_write_buffer_size() > 0
        rec.side.shut(True)
        assert await read_to_end(peer) == blob
        await until(lambda: rec.lost)
        peer.close()

        rec, peer = await connected(loop)
        rec.side.transport.write(blob)
        rec.side.shut(False)
        await until(lambda: rec.lost)
        assert len(await read_to_end(peer)) < len(blob)  # what the transport held was dropped
        peer.close()

    loop.run_until_complete(run())


def test_read_out_takes_what_the_kernel_holds_unread(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        rec, peer = await connected(loop)
        rec.side.hold(WAITING)  # the transport reads nothing: what comes stays in the kernel
        peer.send(b"last words")
        await asyncio.sleep(0.05)
        assert rec.data == b""
        assert rec.side.read_out(1 << 20) == b"last words"
        assert rec.side.read_out(1 << 20) == b""  # nothing more, and it does not block
        rec.side.shut(False)
        assert rec.side.read_out(1 << 20) == b""  # closed: nothing to read
        peer.close()

    loop.run_until_complete(run())


def test_what_a_handler_raises_goes_to_on_error(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        rec, peer = await connected(loop)

        def broken(data: bytes) -> None:
            raise ValueError(data)

        rec.side.on_data = broken
        peer.send(b"boom")
        await until(lambda: rec.errors == 1)
        assert not rec.side.transport.is_closing()  # the connection's handler decides what to close
        rec.side.shut(False)
        peer.close()

    loop.run_until_complete(run())
