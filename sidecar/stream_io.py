"""How the sidecar reads and writes its `IOStream`s cheaply: read sizes that follow the traffic, writes that skip
Tornado's write queue when the socket takes the bytes at once.

Both keep the relay's guarantees: bytes go out in order and unchanged, and a
write the socket cannot take at once is awaited (back-pressure), so memory
stays bounded by the chunk size.
"""

from __future__ import annotations

from typing import Final

from tornado.concurrent import Future
from tornado.iostream import IOStream, StreamClosedError

CHUNK: Final = 65536  # bytes read at once at most; also what one connection holds per direction
# Tornado allocates (and zeroes) a buffer of `read_chunk_size` for every read
# attempt, the ones that find nothing included: 64 KiB costs about 1.2 us more
# than 4 KiB, four times per small exchange. So each stream reads in chunks
# sized to its recent traffic (see `next_chunk_size`).
MIN_CHUNK: Final = 4096


def next_chunk_size(size: int, n: int) -> int:
    """The read size after a read of `n` bytes in chunks of `size`: the most
    when it filled the chunk (more is waiting: a body streams), half when it
    used a quarter or less, never below MIN_CHUNK."""
    if n >= size:
        return CHUNK
    return max(MIN_CHUNK, size >> 1) if n << 2 < size else size


def follow_read_size(stream: IOStream, n: int) -> None:
    """After a read of `n` bytes from `stream`: its next reads sized by `next_chunk_size`. (The HTTP/1
    pumps inline this: a call per chunk is measurable there.)"""
    size = stream.read_chunk_size
    if n >= size or (n << 2 < size and size > MIN_CHUNK):
        stream.read_chunk_size = next_chunk_size(size, n)


def write_through(stream: IOStream, data: bytes) -> Future[None] | None:
    """Write `data` to `stream`, straight to its socket when nothing is queued there.

    `IOStream.write` costs several microseconds per call (a future, a done
    callback run on a later loop turn, a copy into its buffer): as much as the
    rest of a small exchange's relaying. What the socket does not take at once
    goes through `stream.write`, after anything already queued. Returns None
    when all was sent, else the future to await. Raises StreamClosedError.
    """
    if stream.writing() or stream.closed():  # keep the order; a closed stream raises from write()
        return stream.write(data)
    try:
        sent = stream.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:  # reset or broken pipe: closed, as a failed IOStream.write leaves it
        stream.close(exc_info=exc)
        raise StreamClosedError(real_error=exc) from None
    if sent == len(data):
        return None
    return stream.write(memoryview(data)[sent:])
