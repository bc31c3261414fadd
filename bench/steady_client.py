"""A fixed-rate HTTP/1.1 load generator for soak runs, on raw Tornado IOStreams.

wrk sends as fast as it can; a soak wants the same moderate load for minutes.
Workers share one schedule (request k is due at start + k / rate), reuse each
connection for a number of requests then close it (so connection setup and
teardown are exercised too), and mix paths: plain, id-bearing, query strings,
probes, 404s and an occasional 1 MiB body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from dataclasses import dataclass

from tornado.iostream import IOStream, StreamClosedError

MAX_HEAD = 64 * 1024


@dataclass
class LoadStats:
    sent: int = 0
    ok: int = 0  # 2xx and 3xx
    bad_status: int = 0  # 4xx and 5xx, expected for /missing
    errors: int = 0  # connections that failed mid-request
    late: int = 0  # requests sent more than 100 ms after their slot


def request_for(k: int) -> tuple[str, dict[str, str]]:
    """The k-th request's path and extra headers: a deterministic mix."""
    if k % 100 == 0:
        return "/1m", {}
    if k % 20 == 1:
        return "/missing", {}
    if k % 11 == 4:
        return "/healthz", {"User-Agent": "kube-probe/1.29"}
    if k % 7 == 2:
        return f"/users/{k}", {}
    if k % 7 == 3:
        return f"/orders/{uuid.uuid4()}?token=t{k}", {"Authorization": "Bearer soak-secret"}
    return "/", {}


def encode(path: str, headers: dict[str, str], close: bool) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: soak.local", *(f"{k}: {v}" for k, v in headers.items())]
    if "User-Agent" not in headers:
        lines.append("User-Agent: mothership-soak")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_head(head: bytes) -> tuple[int, int]:
    """Status and Content-Length of a response head; ValueError if there is no length to read by."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value.strip())
    if status in (204, 304) or 100 <= status < 200:
        return status, 0
    raise ValueError("response without Content-Length")


class SteadyLoad:
    """Sends `rate` requests per second to 127.0.0.1:`port` until `stop()`."""

    def __init__(self, port: int, rate: float, connections: int = 8, per_connection: int = 100) -> None:
        self.port = port
        self.rate = rate
        self.connections = connections
        self.per_connection = per_connection
        self.stats = LoadStats()
        self._next = 0
        self._start = 0.0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> LoadStats:
        self._start = time.monotonic()
        await asyncio.gather(*(self._worker() for _ in range(self.connections)))
        return self.stats

    async def _take_slot(self) -> int | None:
        k = self._next
        self._next += 1
        delay = self._start + k / self.rate - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        elif delay < -0.1:
            self.stats.late += 1
        return None if self._stopping.is_set() else k

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            stream = IOStream(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                await stream.connect(("127.0.0.1", self.port))
                stream.set_nodelay(True)
                for n in range(self.per_connection):
                    k = await self._take_slot()
                    if k is None:
                        break
                    path, headers = request_for(k)
                    await stream.write(encode(path, headers, close=n == self.per_connection - 1))
                    self.stats.sent += 1
                    status, length = parse_head(await stream.read_until(b"\r\n\r\n", max_bytes=MAX_HEAD))
                    if length:
                        await stream.read_bytes(length)
                    if status < 400:
                        self.stats.ok += 1
                    else:
                        self.stats.bad_status += 1
            except (StreamClosedError, OSError, ValueError):
                self.stats.errors += 1
                await asyncio.sleep(0.05)  # do not spin on a dead target
            finally:
                stream.close()
