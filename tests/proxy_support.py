"""Raw backends, raw clients and an in-process sidecar for the proxy tests.

Backends and clients are plain blocking sockets on 127.0.0.1 in threads, so
a test controls every byte; the sidecar runs on the test's IOLoop. Nothing
here mocks the network.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tornado.testing import bind_unused_port

from app.core.wire import Sample
from app.options import SidecarConfig
from sidecar.proxy import SidecarServer

TIMEOUT = 5.0
T = TypeVar("T")


# --- a backend that sends exact bytes -------------------------------------------------


@dataclass
class Peer:
    """One accepted connection as the backend saw it."""

    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    closed_by_peer: threading.Event = field(default_factory=threading.Event)
    handled: threading.Event = field(default_factory=threading.Event)  # the handler returned (or failed)

    def read_until(self, size: int, timeout: float = TIMEOUT) -> bool:
        """Read until `size` bytes have come in all told; False if the peer closed first."""
        deadline = time.monotonic() + timeout
        while len(self.received) < size:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                return False
            if not data:
                self.closed_by_peer.set()
                return False
            self.received += data
        return True

    def read_until_close(self, timeout: float = TIMEOUT) -> None:
        self.read_until(1 << 62, timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


Handler = Callable[[Peer], None]


class RawBackend:
    """A TCP server in a thread: each connection runs `handler(peer)` in a thread of its own, then closes."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]
        self.peers: list[Peer] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            peer = Peer(sock)
            self.peers.append(peer)
            thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, peer: Peer) -> None:
        try:
            self.handler(peer)
        except OSError:
            pass
        finally:
            peer.sock.close()
            peer.handled.set()

    def close(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accepting.join(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT)


def answer(request_size: int, response: bytes, *, then: str = "close", times: int = 1) -> Handler:
    """A handler: read `request_size` bytes, send `response`; repeat; then "close" or "wait" for the peer."""

    def handler(peer: Peer) -> None:
        for n in range(1, times + 1):
            if not peer.read_until(request_size * n):
                return
            peer.send(response)
        if then == "wait":
            peer.read_until_close()

    return handler


# --- clients ---------------------------------------------------------------------------


def talk(port: int, data: bytes, *, until: int | None = None, timeout: float = TIMEOUT,
         half_close: bool = False) -> bytes:
    """Send `data`, then read until the server closes (or `until` bytes came). Blocking: run it in a thread."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock, until, timeout)


def read_all(sock: socket.socket, until: int | None = None, timeout: float = TIMEOUT) -> bytes:
    received = bytearray()
    deadline = time.monotonic() + timeout
    while until is None or len(received) < until:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            received += b"<RST>"
            break
        if not data:
            break
        received += data
    return bytes(received)


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.005)


# --- the sidecar under test -----------------------------------------------------------


class Sidecar:
    """A `SidecarServer` on a free port of the current IOLoop, keeping every sample it makes."""

    def __init__(self, target_port: int, **settings: Any) -> None:
        self.config = replace(SidecarConfig(target_host="127.0.0.1", target_port=target_port), **settings)
        self.samples: list[Sample] = []
        self.server = SidecarServer(self.config, self.samples.append)
        sock, self.port = bind_unused_port()
        self.server.add_sockets([sock])

    @property
    def counters(self) -> Any:
        return self.server.counters

    async def wait_samples(self, n: int, timeout: float = TIMEOUT) -> list[Sample]:
        await eventually(lambda: len(self.samples) >= n, timeout, f"{n} samples (have {len(self.samples)})")
        return self.samples

    async def settled(self, timeout: float = TIMEOUT) -> None:
        """Every connection closed and no exchange in flight."""
        await eventually(lambda: self.counters.connections_open == 0 and self.counters.exchanges_in_flight == 0,
                         timeout, f"sidecar settled ({self.counters})")

    def close(self) -> None:
        self.server.stop()
        self.server.close_all()


@contextmanager
def listening_but_never_accepting() -> Iterator[int]:
    """A port whose accept queue is full: new connections hang until they time out."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        listener.close()
