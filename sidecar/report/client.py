"""`DashboardClient`: the reporter's POSTs over kept-alive HTTP/1.1 connections.

Tornado's simple `AsyncHTTPClient` opens a new connection for every request,
and accepting and setting up a connection is most of what a POST costs the
dashboard, which thousands of sidecars each POST to at least once a second.
This client keeps its connections open (`tornado.tcpclient` and a client-side
`HTTP1Connection`, as `simple_httpclient` does inside) and reuses an idle one
for the next POST. A reused connection that the dashboard closed without
answering (its idle timeout, a restart) is retried once on a fresh one. That
is safe because our POSTs may be repeated: a stats batch carries an id the
dashboard counts once, and a resource sample only replaces the latest one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httputil import (
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

MAX_IDLE = 4  # idle connections kept per dashboard address (the reporter has at most two POSTs out at once)
MAX_REPLY_BYTES = 1 << 20  # a reply is a short JSON acknowledgement; anything bigger is not read
_PARAMS = HTTP1ConnectionParameters(max_header_size=64 * 1024, max_body_size=MAX_REPLY_BYTES)


@dataclass(frozen=True)
class Reply:
    code: int
    body: bytes


@dataclass(frozen=True)
class _Target:
    """Where a URL's request goes: the connection's key, and the request line's path."""

    scheme: str
    host: str
    port: int
    netloc: str
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The Host header names the host and port only: user:password@ (if any) is no part of it.
        return cls(parts.scheme, parts.hostname, port, parts.netloc.rpartition("@")[2], path)

    @property
    def address(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


class _Collector(HTTPMessageDelegate):
    """Gathers one response: status, whether the connection may be reused, body."""

    def __init__(self) -> None:
        self.code = 0
        self.reusable = False
        self.chunks: list[bytes] = []

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine,
                         headers: HTTPHeaders) -> None:
        assert isinstance(start_line, ResponseStartLine)
        self.code = start_line.code
        # HTTP/1.1 keeps the connection unless told otherwise (RFC 9112, section 9.3);
        # an HTTP/1.0 server's keep-alive is not worth the special case.
        self.reusable = start_line.version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class _NoAnswer(Exception):
    """A reused connection closed before the response's head arrived."""


class DashboardClient:
    """POSTs to one or more dashboard URLs, reusing idle connections.

    `post` returns the reply whatever its status and raises `OSError` when no
    reply came: `TimeoutError` past the timeout, `ConnectionError` or
    `StreamClosedError` when the dashboard could not be reached or closed
    the connection.
    """

    def __init__(self, *, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._tcp = TCPClient()  # uses the process's configured Resolver (sidecar.resolver)
        self._idle: dict[tuple[str, str, int], list[IOStream]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.connections_opened = 0  # so far: how well connections are kept (the tests read it)

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        target = _Target.parse(url)
        async with asyncio.timeout(timeout):
            stream = self._take_idle(target)
            if stream is not None:
                try:
                    return await self._exchange(stream, target, body, headers, reused=True)
                except _NoAnswer:
                    pass  # closed while idle (a restart, an idle timeout): once more, on a fresh connection
            stream = await self._connect(target)
            return await self._exchange(stream, target, body, headers, reused=False)

    def close(self) -> None:
        """Close every idle connection (a POST in flight closes its own when it ends)."""
        for streams in self._idle.values():
            for stream in streams:
                stream.close()
        self._idle.clear()
        self._tcp.close()

    # --- connections -----------------------------------------------------------

    def _take_idle(self, target: _Target) -> IOStream | None:
        streams = self._idle.get(target.address, [])
        while streams:
            stream = streams.pop()
            stream.set_close_callback(None)
            if not stream.closed():
                return stream
        return None

    def _keep(self, target: _Target, stream: IOStream) -> None:
        streams = self._idle.setdefault(target.address, [])
        if len(streams) >= self.max_idle:
            stream.close()
            return
        streams.append(stream)
        # A close callback makes the stream watch the socket while idle, so a
        # connection the dashboard closes meanwhile leaves the pool at once.
        stream.set_close_callback(lambda: streams.remove(stream) if stream in streams else None)

    async def _connect(self, target: _Target) -> IOStream:
        ssl_options = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ssl_options = self._ssl
        try:
            stream = await self._tcp.connect(target.host, target.port, af=socket.AF_UNSPEC,
                                             ssl_options=ssl_options, max_buffer_size=MAX_REPLY_BYTES + 64 * 1024)
        except StreamClosedError as exc:  # say what happened (refused, unreachable), not "Stream is closed"
            if isinstance(exc.real_error, OSError):
                raise exc.real_error from None
            raise
        self.connections_opened += 1
        stream.set_nodelay(True)
        return stream

    # --- one request and its response ----------------------------------------------

    async def _exchange(self, stream: IOStream, target: _Target, body: bytes, headers: dict[str, str], *,
                        reused: bool) -> Reply:
        connection = HTTP1Connection(stream, True, _PARAMS)
        collector = _Collector()
        request_headers = HTTPHeaders(headers)
        request_headers["Host"] = target.netloc
        request_headers["Content-Length"] = str(len(body))
        try:
            connection.write_headers(RequestStartLine("POST", target.path, "HTTP/1.1"), request_headers, body)
            connection.finish()
            if not await connection.read_response(collector):
                raise StreamClosedError()  # a malformed or unfinished response: the connection is closed
        except StreamClosedError as exc:
            stream.close()
            if reused and not collector.code:
                raise _NoAnswer() from exc
            raise
        except BaseException:  # a timeout, a cancelled task: the connection is mid-request, not reusable
            stream.close()
            raise
        if collector.reusable and not stream.closed():
            self._keep(target, stream)
        else:
            stream.close()
        return Reply(collector.code, b"".join(collector.chunks))
