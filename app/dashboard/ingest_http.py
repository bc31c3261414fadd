"""`IngestConnection`: a sidecar's kept-alive connection, its POSTs read with httptools and answered in place.

Thousands of sidecars each POST at least once a second. Tornado's HTTP
connection machinery (futures, header objects, delegates) cost several times
more per request than storing the report, so these connections are asyncio
protocols fed by httptools (llhttp, the parser behind Node and uvicorn): the
head's few interesting headers are kept, the body gathered within the limit,
and `Ingest` says what to answer, all within one `data_received`.

The first request that is not `POST /stats` or `POST /resources` hands the
connection, from that request's first byte, to `hand_off` (the Tornado
application, through `app.dashboard.front`). A request that cannot be handed
off (it came pipelined behind an ingest POST, in the same read) gets a 400
saying so. Malformed requests and heads over 64 KiB get a 400 or a 431; a
POST refused from its head (Host, token, type, declared size) or as its body
passes the limit is answered at once. Either way the connection then lingers
as nginx's does: our side is shut, and what the client still sends is read and
dropped for a bounded time and size before the close. Closing at once would
reset the connection under a client still writing its body (urllib,
requests), and the reset can discard the answer before it is read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import httptools
from tornado.log import access_log

from app.dashboard.heads import HeadWatch
from app.dashboard.ingest import ENDPOINTS, REASONS, SAVED, Ingest, Reply
from app.dashboard.jsontext import dumps

HEAD_LIMIT = 64 * 1024  # bytes of a request head, as Tornado's max_header_size
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TYPE = b"Content-Type: application/json; charset=utf-8\r\n"
SAVED_REPLY = b"HTTP/1.1 200 OK\r\n" + _TYPE + b"Content-Length: %d\r\n\r\n" % len(SAVED) + SAVED
WANTED = (b"authorization", b"content-type", b"content-length", b"expect", b"host")
ONCE = (b"authorization", b"host")  # sent twice: refused (app.dashboard.ingest)

LINGER_SECONDS = 5.0  # after a refusal, what the client still sends is dropped this long at most
LINGER_BYTES = 64 * 1024 * 1024  # and this much at most (nginx: lingering_time 30 s, unbounded size)

HandOff = Callable[[asyncio.Transport, list[bytes]], None]


class _Stop(Exception):
    """Raised in a parser callback to stop reading this connection's bytes as ingest requests."""


def response(reply: Reply, keep_alive: bool, http10: bool) -> bytes:
    if reply.status == 200 and reply.body == SAVED and keep_alive and not http10:
        return SAVED_REPLY
    head = [b"HTTP/1.1 %d %s\r\n" % (reply.status, REASONS[reply.status].encode()), _TYPE,
            b"Content-Length: %d\r\n" % len(reply.body)]
    head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in reply.extra]
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    elif http10:
        head.append(b"Connection: keep-alive\r\n")
    return b"".join([*head, b"\r\n", reply.body])


class IngestConnection(asyncio.Protocol):
    """One client connection, read as a sequence of ingest POSTs until it is handed off or closed."""

    transport: asyncio.Transport

    def __init__(self, ingest: Ingest, heads: HeadWatch, hand_off: HandOff, peer: str,
                 connections: set[IngestConnection]) -> None:
        self.ingest = ingest
        self.max_body = ingest.ctx.config.max_body_bytes
        self.heads = heads
        self.hand_off = hand_off
        self.peer = peer
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        # The read being parsed, and whether a message that begins in it begins at its first byte.
        self.read = b""
        self.idle_at_read = True
        self.idle = True
        self.raw: list[bytes] | None = None  # the reads since the current message began, until it is known
        self.handing = False
        self.lingering: asyncio.TimerHandle | None = None
        self.linger_left = LINGER_BYTES
        self._reset()

    def _reset(self) -> None:
        self.in_head = False
        self.head_bytes = 0  # of the URL and headers seen
        self.head_reads = 0  # of reads that were all head
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.repeated = ""
        self.endpoint = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.http10 = False
        self.started = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)
        self.heads.waiting(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.lingering is not None:
            self.lingering.cancel()
        self.connections.discard(self)
        self.heads.forget(self)
        self._part()

    def _part(self) -> None:
        """Break the parser's reference cycle (it holds this object's methods), so the connection is freed by
        reference counts: the dashboard's collector is frozen (app.dashboard.server)."""
        self.chunks = []
        del self.parser

    def data_received(self, data: bytes) -> None:
        if self.lingering is not None:  # refused: read and dropped
            self.linger_left -= len(data)
            if self.linger_left < 0:
                self.close()
            return
        self.read = data
        self.idle_at_read = self.idle
        in_head = self.in_head
        if self.raw is not None:
            self.raw.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # an Upgrade header on an ingest POST: answered as any POST, the rest is not read
        except httptools.HttpParserError as exc:
            if not (self.handing or self.closed or self.lingering):
                self.fail(400, "malformed", f"malformed request ({str(exc)[:80]})")
        if self.handing:
            if self.raw is None:
                self.fail(400, "pipelined", "a request other than an ingest POST came behind another one in the "
                          "same read; send it after the answer or on its own connection")
            else:
                self.heads.forget(self)
                self.connections.discard(self)
                self.ingest.ctx.metrics.handoffs.inc()
                self.hand_off(self.transport, self.raw)
                self._part()
            return
        if in_head and self.in_head and not self.closed:  # a head that has taken this whole read and goes on
            self.head_reads += len(data)  # (httptools holds a header's unfinished value meanwhile)
            if self.head_reads > HEAD_LIMIT:
                self.fail(431, "head_too_large", f"the request head is larger than {HEAD_LIMIT} bytes")

    def close(self) -> None:
        """Close now (the sweep of idle connections, the dashboard stopping); what is written is sent first."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    # --- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.closed:
            raise _Stop
        self.idle = False
        self.in_head = True
        self.started = time.perf_counter()
        # A request that is not an ingest POST can only be handed off from its first byte.
        self.raw = [self.read] if self.idle_at_read else None
        self.idle_at_read = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        name = name.lower()
        if name in WANTED:
            if name in ONCE and name in self.headers:
                self.repeated = name.decode().title()
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_bytes > HEAD_LIMIT:
            self.fail(431, "head_too_large", f"the request head is larger than {HEAD_LIMIT} bytes")
            raise _Stop
        endpoint = ENDPOINTS.get(self.url.partition(b"?")[0]) if self.parser.get_method() == b"POST" else None
        if endpoint is None:
            self.handing = True
            raise _Stop
        self.raw = None
        self.endpoint = endpoint
        self.keep_alive = self.parser.should_keep_alive()
        self.http10 = self.parser.get_http_version() == "1.0"
        headers = self.headers
        expect = headers.get(b"expect", b"").lower() == b"100-continue" and not self.http10
        reply = self.ingest.check_head(endpoint, _text(headers.get(b"authorization")),
                                       _text(headers.get(b"content-type")), _text(headers.get(b"content-length")),
                                       self.peer, self.started, host=headers.get(b"host"), repeated=self.repeated)
        if reply is not None:
            self.refuse(reply)
        elif expect:
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:  # a chunked body gives no length up front
            self.refuse(self.ingest.too_large(self.endpoint, self.peer, self.started))
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.idle = True
        self.heads.waiting(self)  # the next request's time starts now
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.respond(self.ingest.save(self.endpoint, body, self.peer, self.started))
        if not self.keep_alive:
            self.close()
        self._reset()

    # --- answers -------------------------------------------------------------------------

    def respond(self, reply: Reply) -> None:
        if not self.closed:
            self.transport.write(response(reply, self.keep_alive, self.http10))

    def refuse(self, reply: Reply) -> None:
        """Answer before the whole body is read, then linger: the rest is read and dropped, not parsed."""
        self.keep_alive = False
        self.respond(reply)
        self.linger()
        raise _Stop

    def linger(self) -> None:
        """Shut our side (the answer is complete), drop what comes for a while, then close."""
        if self.closed or self.lingering is not None:
            return
        self.heads.forget(self)
        self.transport.write_eof()
        self.lingering = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.close)

    def fail(self, status: int, reason: str, message: str) -> None:
        """Refuse a request whose endpoint is not known yet, count it, and close."""
        self.ingest.ctx.metrics.refused[reason].inc()
        access_log.warning("%d %s (%s)", status, message, self.peer)
        self.keep_alive = False
        self.respond(Reply(status, dumps({"error": message}).encode()))
        self.linger()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
