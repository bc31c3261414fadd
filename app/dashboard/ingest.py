"""The sidecars' POSTs (`/stats`, `/resources`), served below Tornado's `RequestHandler`.

Thousands of sidecars each POST at least once a second, and the per-request
machinery of a `RequestHandler` (default headers, cookies, flush, finish, the
access log) costs more than checking and storing a report. `IngestRequest`
is a bare `HTTPMessageDelegate` on the connection: it checks the token, the
type and the size from the headers, gathers the body within the limit,
decodes and checks it (`app.wire`), hands it to the `PodStore` and writes a
short reply. `IngestDispatch` sends those POSTs to it and every other request
to the Tornado application. Refusals are JSON `{"error": ...}` with a 4xx,
logged, and leave nothing stored, exactly as the handlers' are.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ujson
from tornado.http1connection import HTTP1Connection
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.log import access_log

from app.dashboard import auth
from app.dashboard.handlers import Context
from app.dashboard.heads import HeadWatch
from app.dashboard.jsontext import dumps
from app.wire import WireError, parse_resources, parse_stats

log = logging.getLogger("mothership.dashboard")

ENDPOINTS = {"/stats": "stats", "/resources": "resources"}
JSON_TYPES = ("application/json",)
JSON_TYPE = "application/json; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 413: "Payload Too Large",
           415: "Unsupported Media Type", 500: "Internal Server Error"}
SAVED = b'{"response":"saved"}'
_ESCAPED_UNICODE = re.compile(rb"\\u")


def decode_body(body: bytes) -> Any:
    """The decoded JSON of a POST body, or a WireError saying why it is refused."""
    if not body.strip():
        raise WireError("the body is empty; send a JSON object")
    try:
        value = ujson.loads(body)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise WireError(f"the body is not valid JSON ({str(exc)[:80]})") from None
    # ujson lets lone surrogates through (escaped, or raw as ED A0..BF); they could not be
    # written back out, to a page or to SQLite. Only bodies that could hold one pay for the check.
    # (The regex finds a backslash-u about twice as fast as `in` does in a sidecar's batch.)
    if _ESCAPED_UNICODE.search(body) or b"\xed" in body:
        try:
            dumps(value).encode("utf-8")
        except (UnicodeEncodeError, OverflowError):
            raise WireError("strings must be valid Unicode (no lone surrogates)") from None
    return value


class IngestRequest(HTTPMessageDelegate):
    """One `POST /stats` or `POST /resources` on a connection."""

    def __init__(self, ctx: Context, connection: HTTPConnection, endpoint: str) -> None:
        self.ctx = ctx
        self.connection = connection
        self.endpoint = endpoint
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False  # answered (a refusal can come before the body is read)
        self.head_at = 0.0  # when the head arrived (for the log)
        self.body_at = 0.0  # when the whole body was in (for mothership_ingest_seconds)
        self.method_path = f"POST /{endpoint}"

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine,
                         headers: HTTPHeaders) -> None:
        self.head_at = time.perf_counter()
        config = self.ctx.config
        if not auth.bearer_ok(headers.get("Authorization"), config.token):
            return self.refuse(401, "unauthorized", "a valid Authorization: Bearer token is required",
                               ("WWW-Authenticate", 'Bearer realm="mothership"'))
        ctype = headers.get("Content-Type")
        if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in JSON_TYPES:
            return self.refuse(415, "unsupported_type", "Content-Type must be application/json")
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            return self.too_large()
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.done:
            return None
        self.size += len(chunk)
        if self.size > self.ctx.config.max_body_bytes:  # a chunked body gives no length up front
            self.chunks = []
            self.too_large()
            return None
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.done:
            return
        self.body_at = time.perf_counter()
        body, self.chunks = b"".join(self.chunks), []
        try:
            if self.endpoint == "stats":
                self.save_stats(body)
            else:
                self.save_resources(body)
        except WireError as exc:
            self.refuse(400, "bad_request", str(exc))
        except Exception:  # a bug must cost one request, not the connection
            log.error("%s failed", self.method_path, exc_info=True)
            self.reply(500, dumps({"error": REASONS[500]}).encode())

    def on_connection_close(self) -> None:
        self.chunks = []

    # --- outcomes --------------------------------------------------------------------

    def save_stats(self, body: bytes) -> None:
        batch = parse_stats(decode_body(body))
        metrics = self.ctx.metrics
        ack = self.ctx.store.ingest_stats(batch)
        metrics.ingest["stats", "duplicate" if ack.duplicate else "saved"].inc()
        if not ack.duplicate:
            metrics.samples.inc(ack.samples)
            metrics.exchanges.inc(ack.exchanges)
            if batch.dropped:
                metrics.dropped.inc(batch.dropped)
        self.reply(200, dumps({"response": "saved", "pod": batch.pod, "duplicate": ack.duplicate,
                               "samples": ack.samples, "cells": ack.cells}).encode())
        metrics.ingest_seconds["stats"].observe(time.perf_counter() - self.body_at)

    def save_resources(self, body: bytes) -> None:
        report = parse_resources(decode_body(body), raw=body)
        self.ctx.store.ingest_resources(report)
        self.ctx.metrics.ingest["resources", "saved"].inc()
        self.reply(200, SAVED)
        self.ctx.metrics.ingest_seconds["resources"].observe(time.perf_counter() - self.body_at)

    def too_large(self) -> None:
        self.refuse(413, "too_large", f"the body is larger than {self.ctx.config.max_body_bytes} bytes")

    def refuse(self, status: int, outcome: str, message: str, *extra: tuple[str, str]) -> None:
        self.ctx.metrics.ingest[self.endpoint, outcome].inc()
        self.reply(status, dumps({"error": message}).encode(), *extra)
        # Refusals only, as the handlers' log (app.dashboard.server): successes would drown the log.
        context = getattr(self.connection, "context", None)
        access_log.warning("%d %s (%s) %.2fms", status, self.method_path, getattr(context, "remote_ip", "?"),
                           1000.0 * (time.perf_counter() - self.head_at))

    def reply(self, status: int, body: bytes, *extra: tuple[str, str]) -> None:
        self.done = True
        headers = HTTPHeaders({"Content-Type": JSON_TYPE, "Content-Length": str(len(body))})
        for name, value in extra:
            headers[name] = value
        self.connection.write_headers(ResponseStartLine("HTTP/1.1", status, REASONS[status]), headers, body)
        self.connection.finish()


class IngestDispatch(HTTPMessageDelegate):
    """Sends a request to an `IngestRequest` or, when it is not an ingest POST, to `fallback()`'s delegate,
    and tells `heads` when the whole request (head and body) has arrived."""

    def __init__(self, ctx: Context, connection: HTTPConnection, heads: HeadWatch,
                 fallback: Callable[[], HTTPMessageDelegate]) -> None:
        self.ctx = ctx
        self.connection = connection
        self.heads = heads
        self.fallback = fallback
        self.target: HTTPMessageDelegate | None = None

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine,
                         headers: HTTPHeaders) -> Awaitable[None] | None:
        assert isinstance(start_line, RequestStartLine)
        endpoint = ENDPOINTS.get(start_line.path.partition("?")[0]) if start_line.method == "POST" else None
        self.target = IngestRequest(self.ctx, self.connection, endpoint) if endpoint else self.fallback()
        return self.target.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.target is not None
        return self.target.data_received(chunk)

    def finish(self) -> None:
        assert self.target is not None
        if isinstance(self.connection, HTTP1Connection):
            self.heads.arrived(self.connection)
        self.target.finish()

    def on_connection_close(self) -> None:
        if self.target is not None:
            self.target.on_connection_close()
