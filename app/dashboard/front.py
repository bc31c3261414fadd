"""`Front`: the dashboard's listening sockets, each connection routed by its first bytes.

A connection whose first bytes can be `POST /stats` or `POST /resources` (a
sidecar) is served by an `IngestConnection`; any other (a browser, a
scraper, a WebSocket) goes straight to the Tornado application's
`HTTPServer`, as if it had accepted it itself. When an ingest connection
later sends another kind of request, it is handed to the same server from
that request's first byte through an in-process relay (a socket pair); the
application sees such a connection as a local one (its log shows 0.0.0.0). Connections that send nothing
are closed by the `HeadWatch`, like those that stop halfway through a request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import add_accept_handler, bind_sockets

from app.dashboard.heads import HeadWatch
from app.dashboard.ingest import Ingest
from app.dashboard.ingest_http import IngestConnection

log = logging.getLogger("mothership.dashboard")

INGEST_STARTS = (b"POST /stats", b"POST /resources")
PEEK = max(len(start) for start in INGEST_STARTS)


def may_be_ingest(first: bytes) -> bool:
    """Whether a connection whose first bytes are `first` may be a sidecar's (it is served as one until it is not)."""
    return any(start.startswith(first) or first.startswith(start) for start in INGEST_STARTS)


class _FirstBytes:
    """An accepted connection until its first bytes arrive (watched, so one that never sends is closed)."""

    def __init__(self, front: Front, sock: socket.socket, address: Any) -> None:
        self.front = front
        self.sock = sock
        self.address = address
        self.fd = sock.fileno()

    def readable(self) -> None:
        try:
            first = self.sock.recv(PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            first = b""
        self._release()
        if first:
            self.front.route(self.sock, self.address, first)
        else:
            self.sock.close()

    def close(self) -> None:
        self._release()
        self.sock.close()

    def _release(self) -> None:
        self.front.loop.remove_reader(self.fd)
        self.front.heads.forget(self)
        self.front.pending.discard(self)


class Front:
    """Accepts connections and gives each to an `IngestConnection` or to `app_server`."""

    def __init__(self, ingest: Ingest, heads: HeadWatch, app_server: HTTPServer) -> None:
        self.ingest = ingest
        self.heads = heads
        self.app_server = app_server
        self.loop = asyncio.get_running_loop()
        self.connections: set[IngestConnection] = set()
        self.pending: set[_FirstBytes] = set()
        self._sockets: list[socket.socket] = []
        self._stop_accepting: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def listen(self, port: int, host: str, backlog: int) -> None:
        for sock in bind_sockets(port, host, backlog=backlog):
            self._sockets.append(sock)
            self._stop_accepting.append(add_accept_handler(sock, self._accepted))

    def _accepted(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        waiter = _FirstBytes(self, sock, address)
        self.pending.add(waiter)
        self.heads.waiting(waiter)
        self.loop.add_reader(waiter.fd, waiter.readable)

    def route(self, sock: socket.socket, address: Any, first: bytes) -> None:
        if may_be_ingest(first):
            self._run(self._serve_ingest(sock, address))
        else:
            self.app_server.handle_stream(IOStream(sock), address)

    async def _serve_ingest(self, sock: socket.socket, address: Any) -> None:
        peer = str(address[0]) if isinstance(address, tuple) else "?"

        def hand_off(transport: asyncio.Transport, raw: list[bytes]) -> None:
            client = _ClientSide(transport)
            transport.set_protocol(client)
            transport.pause_reading()  # until the application's end is ready
            self._run(relay(self.app_server, client, raw, address))

        try:
            await self.loop.connect_accepted_socket(
                lambda: IngestConnection(self.ingest, self.heads, hand_off, peer, self.connections), sock)
        except OSError:
            sock.close()

    def _run(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Stop accepting; the connections go on."""
        for stop in self._stop_accepting:
            stop()
        for sock in self._sockets:
            sock.close()
        self._stop_accepting, self._sockets = [], []

    async def close_all_connections(self) -> None:
        """Close every connection: what was answered is sent first; the application's connections finish."""
        for waiter in list(self.pending):
            waiter.close()
        for connection in list(self.connections):
            connection.close()
        await self.app_server.close_all_connections()


class _ClientSide(asyncio.Protocol):
    """The client's end of a relay: what it sends goes to the application's end, and back."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.app: asyncio.Transport | None = None

    def data_received(self, data: bytes) -> None:
        assert self.app is not None  # reading is paused until it is there
        self.app.write(data)

    def eof_received(self) -> bool:
        if self.app is not None and self.app.can_write_eof():
            self.app.write_eof()
        return True  # keep the client's end open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.app is not None:
            self.app.close()

    def pause_writing(self) -> None:  # the client reads slower than the application writes
        if self.app is not None:
            self.app.pause_reading()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_reading()


class _AppSide(asyncio.Protocol):
    """The application's end of a relay."""

    def __init__(self, client: _ClientSide) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def eof_received(self) -> bool:
        if self.client.transport.can_write_eof():
            self.client.transport.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:  # the application reads slower than the client writes
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


async def relay(app_server: HTTPServer, client: _ClientSide, raw: list[bytes], address: Any) -> None:
    """From here on, the client's bytes (starting with `raw`) go to `app_server`, and its answers back."""
    ours, theirs = socket.socketpair()
    app_server.handle_stream(IOStream(theirs), address)
    try:
        app, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: _AppSide(client), ours)
    except OSError:
        ours.close()
        client.transport.close()
        return
    for chunk in raw:
        app.write(chunk)
    client.app = app
    if client.transport.is_closing():
        app.close()
    else:
        client.transport.resume_reading()
