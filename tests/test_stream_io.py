"""`sidecar.stream_io`: read sizes, and writes straight to the socket, on real loopback sockets."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.iostream import IOStream, StreamClosedError

from sidecar.stream_io import CHUNK, MIN_CHUNK, next_chunk_size, write_through


def test_read_sizes_follow_the_traffic() -> None:
    assert next_chunk_size(MIN_CHUNK, 300) == MIN_CHUNK  # small exchanges read small
    assert next_chunk_size(MIN_CHUNK, MIN_CHUNK) == CHUNK  # a full read: more is waiting, read it all at once
    assert next_chunk_size(CHUNK, CHUNK) == CHUNK
    assert next_chunk_size(CHUNK, CHUNK // 2) == CHUNK  # a body streaming in uneven reads keeps its size
    size, steps = CHUNK, 0
    while size > MIN_CHUNK:  # back to small reads within a few exchanges
        size, steps = next_chunk_size(size, 300), steps + 1
    assert size == MIN_CHUNK and steps <= 5
    assert next_chunk_size(16384, 5000) == 16384  # a chunk that fits the traffic stays


@pytest.fixture
def pair(io_loop: Any) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on loopback: ours (for an IOStream made on the test's loop) and the peer's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
    yield ours, peer
    ours.close()
    peer.close()


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.gen_test(timeout=10)
async def test_a_write_the_socket_takes_at_once_needs_no_waiting(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    stream = IOStream(ours)
    assert write_through(stream, b"HTTP/1.1 200 OK\r\n\r\n") is None
    assert not stream.writing()
    assert read_exactly(peer, 19) == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.gen_test(timeout=20)
async def test_what_the_socket_cannot_take_is_queued_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    stream = IOStream(ours)
    big = bytes(range(256)) * 128 * 1024  # 32 MiB: far more than the two sockets' buffers hold
    tail = b"the end"
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_exactly(peer, len(big) + len(tail))))
    first = write_through(stream, big)
    assert first is not None and stream.writing()  # the rest waits in the stream: back-pressure
    second = write_through(stream, tail)  # queued behind it, never sent ahead
    assert second is not None
    reader.start()
    await first
    await second
    reader.join(10)
    assert received == [big + tail]


@pytest.mark.gen_test(timeout=10)
async def test_a_peer_that_reset_the_connection_closes_the_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    stream = IOStream(ours)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # an RST
    with pytest.raises(StreamClosedError):
        for _ in range(100):  # the first write may still be taken before the reset is seen
            pending = write_through(stream, b"x" * 1000)
            if pending is not None:
                await pending
    assert stream.closed()
    with pytest.raises(StreamClosedError):
        write_through(stream, b"more")
