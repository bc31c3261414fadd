"""HTTP handlers of the dashboard: ingest, queries, the page, health and metrics.

Each handler is a few lines between the wire checks (`app.wire`) and the
`PodStore`; errors are JSON `{"error": ...}` with a 4xx status, and nothing
from a refused request reaches the store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ujson
from tornado.web import HTTPError, RequestHandler, stream_request_body

from app import paths
from app.dashboard import auth
from app.dashboard.aggregate import SERIES_STEPS, PodStore
from app.dashboard.hub import LiveHub
from app.dashboard.jsontext import dumps
from app.dashboard.metrics import DashboardMetrics
from app.options import DashboardConfig
from app.wire import WireError, parse_resources, parse_stats

log = logging.getLogger("mothership.dashboard")

CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
JSON_TYPES = ("application/json",)


@dataclass
class Context:
    """What every handler needs, passed in explicitly (no reaching into the application)."""

    config: DashboardConfig
    store: PodStore
    hub: LiveHub
    metrics: DashboardMetrics
    history_ok: bool = True


class JSONHandler(RequestHandler):
    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        # Every header costs a check per request: thousands of sidecars' POSTs go without these.
        if self.request.method != "POST":
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Cache-Control", "no-store")

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"  # no query: it may hold a token

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(value if isinstance(value, str) else dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], HTTPError) and exc_info[1].log_message:
            reason = exc_info[1].log_message
        if status_code == 401 and self._challenge:
            # send_error cleared the headers set before raising: set the challenge again.
            self.set_header("WWW-Authenticate", self._challenge)
        self.send_json({"error": reason}, status_code)

    _challenge = ""

    def require_view(self) -> None:
        if not auth.view_ok(self.ctx.config.view_token, query_token=self.get_query_argument("token", None),
                            cookie=self.get_cookie(auth.VIEW_COOKIE),
                            authorization=self.request.headers.get("Authorization")):
            self._challenge = 'Basic realm="mothership"'
            raise HTTPError(401, "the view token is missing or wrong")


@stream_request_body
class IngestHandler(JSONHandler):
    """POST checks shared by /stats and /resources: token, type, size, then JSON."""

    endpoint = ""

    def initialize(self, ctx: Context) -> None:
        super().initialize(ctx)
        self._chunks: list[bytes] = []
        self.raw_body = b""
        self._size = 0
        self._refused = False

    def _refuse(self, status: int, outcome: str, message: str) -> None:
        self._refused = True
        self.ctx.metrics.ingest[self.endpoint, outcome].inc()
        self.send_json({"error": message}, status)

    def prepare(self) -> None:
        if self.request.method != "POST":
            self.require_view()
            return
        config = self.ctx.config
        if not auth.bearer_ok(self.request.headers.get("Authorization"), config.token):
            self.set_header("WWW-Authenticate", 'Bearer realm="mothership"')
            return self._refuse(401, "unauthorized", "a valid Authorization: Bearer token is required")
        ctype = self.request.headers.get("Content-Type")
        if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in JSON_TYPES:
            return self._refuse(415, "unsupported_type", "Content-Type must be application/json")
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            return self._refuse(413, "too_large", f"the body is larger than {config.max_body_bytes} bytes")

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > self.ctx.config.max_body_bytes:  # a chunked body gives no length up front
            self._chunks = []
            self._refuse(413, "too_large", f"the body is larger than {self.ctx.config.max_body_bytes} bytes")
            return
        self._chunks.append(chunk)

    def decoded(self) -> Any:
        body = self.raw_body = b"".join(self._chunks)
        self._chunks = []
        if not body.strip():
            raise WireError("the body is empty; send a JSON object")
        try:
            value = ujson.loads(body)
        except (ValueError, OverflowError, RecursionError) as exc:
            raise WireError(f"the body is not valid JSON ({str(exc)[:80]})") from None
        # ujson lets lone surrogates through (escaped, or raw as ED A0..BF); they could not be
        # written back out, to a page or to SQLite. Only bodies that could hold one pay for the check.
        if b"\\u" in body or b"\xed" in body:
            try:
                dumps(value).encode("utf-8")
            except (UnicodeEncodeError, OverflowError):
                raise WireError("strings must be valid Unicode (no lone surrogates)") from None
        return value


class StatsHandler(IngestHandler):
    endpoint = "stats"

    def post(self) -> None:
        if self._refused:
            return
        started = time.perf_counter()
        metrics = self.ctx.metrics
        try:
            batch = parse_stats(self.decoded())
        except WireError as exc:
            return self._refuse(400, "bad_request", str(exc))
        ack = self.ctx.store.ingest_stats(batch)
        metrics.ingest["stats", "duplicate" if ack.duplicate else "saved"].inc()
        if not ack.duplicate:
            metrics.samples.inc(ack.samples)
            metrics.exchanges.inc(ack.exchanges)
            if batch.dropped:
                metrics.dropped.inc(batch.dropped)
        self.send_json({"response": "saved", "pod": batch.pod, "duplicate": ack.duplicate,
                        "samples": ack.samples, "cells": ack.cells})
        metrics.ingest_seconds["stats"].observe(time.perf_counter() - started)

    def get(self) -> None:
        self.send_json(self.ctx.store.stats_list())


class ResourcesHandler(IngestHandler):
    endpoint = "resources"

    def post(self) -> None:
        if self._refused:
            return
        started = time.perf_counter()
        try:
            report = parse_resources(self.decoded(), raw=self.raw_body)
        except WireError as exc:
            return self._refuse(400, "bad_request", str(exc))
        self.ctx.store.ingest_resources(report)
        self.ctx.metrics.ingest["resources", "saved"].inc()
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(b'{"response":"saved"}')
        self.ctx.metrics.ingest_seconds["resources"].observe(time.perf_counter() - started)

    def get(self) -> None:
        self.send_json(self.ctx.store.resources_list())


class OverviewHandler(JSONHandler):
    def get(self) -> None:
        self.require_view()
        self.send_json(self.ctx.hub.overview_json())


class SeriesHandler(JSONHandler):
    def get(self) -> None:
        self.require_view()
        scope = self.get_query_argument("scope", "all")
        window_text = self.get_query_argument("window", "300")
        if not window_text.isdigit() or int(window_text) not in SERIES_STEPS:
            raise HTTPError(400, f"window must be one of {', '.join(map(str, sorted(SERIES_STEPS)))}")
        if not (scope == "all" or scope.startswith(("app:", "pod:"))):
            raise HTTPError(400, "scope must be all, app:NAME or pod:NAME")
        series = self.ctx.store.series(scope, int(window_text))
        if series is None:
            raise HTTPError(404, f"no such scope: {scope[:100]}")
        self.send_json(series)


class HealthHandler(JSONHandler):
    def get(self) -> None:
        live, stale = self.ctx.store.counts()
        status = "ok" if self.ctx.history_ok else "degraded"
        self.send_json({"status": status, "pods": live, "stale": stale, "history": self.ctx.history_ok})


class MetricsHandler(JSONHandler):
    def get(self) -> None:
        live, stale = self.ctx.store.counts()
        self.ctx.metrics.pods_live.set(live)
        self.ctx.metrics.pods_stale.set(stale)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())


class PageHandler(JSONHandler):
    """GET /: the live page. `?token=` (the view token) becomes a cookie, then a clean URL."""

    def get(self) -> None:
        self.require_view()
        view_token = self.ctx.config.view_token
        if view_token and self.get_query_argument("token", None) is not None:
            self.set_cookie(auth.VIEW_COOKIE, auth.view_cookie(view_token), httponly=True, samesite="Strict",
                            secure=self.request.protocol == "https")
            self.redirect("/")  # keep the token out of the address bar and history
            return
        if not (paths.TEMPLATES_DIR / "index.html").is_file():
            raise HTTPError(503, "the page's template (templates/index.html) is not installed")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Referrer-Policy", "no-referrer")
        self.render("index.html")
