"""What a sidecar's `POST /stats` or `POST /resources` does, whatever carries it.

`Ingest` checks a request's head (token, type, declared size) and then its
body (size, JSON, `app.core.wire`), hands a report to the `PodStore`, counts it,
and says what to answer: a `Reply` of status, JSON body and extra headers.
Refusals are JSON `{"error": ...}` with a 4xx, counted, logged, and leave
nothing stored. It knows nothing of sockets: `app.dashboard.ingest_http`
reads the sidecars' requests off their connections and writes the replies
(and the application's handlers do, for a POST on a connection Tornado serves).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import ujson
from tornado.log import access_log

from app.core.wire import WireError, parse_resources, parse_stats
from app.dashboard import auth
from app.dashboard.aggregate import StoreFull
from app.dashboard.context import Context
from app.dashboard.jsontext import dumps

log = logging.getLogger("mothership.dashboard")

ENDPOINTS = {b"/stats": "stats", b"/resources": "resources"}
JSON_TYPES = ("application/json",)
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 413: "Payload Too Large",
           415: "Unsupported Media Type", 421: "Misdirected Request", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}
SAVED = b'{"response":"saved"}'
_ESCAPED_UNICODE = re.compile(rb"\\u")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    extra: tuple[tuple[str, str], ...] = ()


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


class Ingest:
    """The checks, the store and the counters behind the two ingest endpoints."""

    def __init__(self, ctx: Context, *, log_refusals: bool = True) -> None:
        self.ctx = ctx
        self.log_refusals = log_refusals  # Tornado's handlers log their own

    def check_head(self, endpoint: str, authorization: str | None, content_type: str | None,
                   content_length: str | None, peer: str, started: float, *, host: str | bytes | None = None,
                   repeated: str = "") -> Reply | None:
        """A refusal from the head alone, or None when the body should be read.

        `host` is the Host header (None: absent); `repeated` names a header sent
        more than once among Host and Authorization (one rule for both paths:
        refused, since two proxies could each read a different one).
        """
        config = self.ctx.config
        if not self.ctx.hosts.allows(host):
            return self.refuse(endpoint, 421, "wrong_host", "this Host is not one the dashboard is known by; "
                               "add it to --allowed-hosts", peer, started)
        if repeated:
            return self.refuse(endpoint, 400, "repeated_header", f"send one {repeated} header, not several",
                               peer, started)
        if not auth.bearer_ok(authorization, config.token):
            return self.refuse(endpoint, 401, "unauthorized", "a valid Authorization: Bearer token is required",
                               peer, started, ("WWW-Authenticate", 'Bearer realm="mothership"'))
        # Required, not only checked when present: a browser sends a POST of another type (or none, as
        # sendBeacon and a no-cors fetch of a Blob do) cross-site without asking first; this one it must
        # ask about (a CORS preflight), and the dashboard never grants one.
        if content_type is None or content_type.split(";", 1)[0].strip().lower() not in JSON_TYPES:
            return self.refuse(endpoint, 415, "unsupported_type", "Content-Type must be application/json",
                               peer, started)
        if content_length is not None and content_length.isdigit() and int(content_length) > config.max_body_bytes:
            return self.too_large(endpoint, peer, started)
        return None

    def save(self, endpoint: str, body: bytes, peer: str, started: float) -> Reply:
        """Store a whole body; a refusal when it cannot be, a 500 (and the traceback logged) on a bug."""
        body_at = time.perf_counter()
        try:
            reply = self.save_stats(body) if endpoint == "stats" else self.save_resources(body)
        except WireError as exc:
            return self.refuse(endpoint, 400, "bad_request", str(exc), peer, started)
        except StoreFull as exc:  # room comes as pods go stale: ask the sender to come back then
            retry = str(max(1, round(self.ctx.config.stale_after)))
            return self.refuse(endpoint, 503, exc.reason, str(exc), peer, started, ("Retry-After", retry))
        except Exception:  # a bug must cost one request, not the connection
            log.error("POST /%s failed", endpoint, exc_info=True)
            return Reply(500, dumps({"error": REASONS[500]}).encode())
        self.ctx.metrics.ingest_seconds[endpoint].observe(time.perf_counter() - body_at)
        return reply

    def save_stats(self, body: bytes) -> Reply:
        batch = parse_stats(decode_body(body))
        metrics = self.ctx.metrics
        ack = self.ctx.store.ingest_stats(batch)
        metrics.ingest["stats", "duplicate" if ack.duplicate else "saved"].inc()
        if not ack.duplicate:
            if self.ctx.alerts is not None:
                self.ctx.alerts.observe_stats(batch)
            metrics.samples.inc(ack.samples)
            metrics.exchanges.inc(ack.exchanges)
            if batch.dropped:
                metrics.dropped.inc(batch.dropped)
        return Reply(200, dumps({"response": "saved", "pod": batch.pod, "duplicate": ack.duplicate,
                                 "samples": ack.samples, "cells": ack.cells}).encode())

    def save_resources(self, body: bytes) -> Reply:
        report = parse_resources(decode_body(body), raw=body)
        self.ctx.store.ingest_resources(report)
        if self.ctx.alerts is not None:
            self.ctx.alerts.observe_seen(report.pod, report.app)
        self.ctx.metrics.ingest["resources", "saved"].inc()
        return Reply(200, SAVED)

    def too_large(self, endpoint: str, peer: str, started: float) -> Reply:
        return self.refuse(endpoint, 413, "too_large", f"the body is larger than {self.ctx.config.max_body_bytes} "
                           "bytes", peer, started)

    def refuse(self, endpoint: str, status: int, outcome: str, message: str, peer: str, started: float,
               *extra: tuple[str, str]) -> Reply:
        self.ctx.metrics.ingest[endpoint, outcome].inc()
        # Refusals only, as the handlers' log (app.dashboard.server): successes would drown the log.
        if self.log_refusals:
            access_log.warning("%d POST /%s (%s) %.2fms", status, endpoint, peer,
                               1000.0 * (time.perf_counter() - started))
        return Reply(status, dumps({"error": message}).encode(), extra)
