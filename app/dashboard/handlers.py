"""HTTP handlers of the dashboard: queries, the page, health and metrics.

Each handler is a few lines in front of the `PodStore` or the `LiveHub`;
errors are JSON `{"error": ...}` with a 4xx status. The sidecars' POSTs are
served below these handlers (`app.dashboard.ingest_http`); `IngestHandler`
serves the rare POST on a connection that Tornado serves, with the same `Ingest`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tornado import template
from tornado.web import HTTPError, StaticFileHandler

from app import paths
from app.dashboard import auth
from app.dashboard.context import Context
from app.dashboard.guard import SafeLogging
from app.dashboard.ingest import Ingest
from app.dashboard.jsontext import dumps
from app.dashboard.tiers import WindowError, parse_end, parse_range, parse_window

log = logging.getLogger("mothership.dashboard")

CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class JSONHandler(SafeLogging):
    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def head(self) -> Any:
        """HEAD wherever GET is served: the same status and headers (Tornado leaves the body out).

        What `get` returns is handed back: Tornado awaits it when `get` is a coroutine."""
        return self.get()

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


class IngestHandler(JSONHandler):
    """POST /stats or /resources on a connection that began with another request: what the front does."""

    endpoint = ""

    def post(self) -> None:
        ingest, started, headers = Ingest(self.ctx, log_refusals=False), time.perf_counter(), self.request.headers
        peer = str(self.request.remote_ip)
        repeated = next((name for name in ("Host", "Authorization") if len(headers.get_list(name)) > 1), "")
        reply = ingest.check_head(self.endpoint, headers.get("Authorization"), headers.get("Content-Type"),
                                  headers.get("Content-Length"), peer, started, host=headers.get("Host"),
                                  repeated=repeated)
        if reply is None and len(self.request.body) > self.ctx.config.max_body_bytes:  # chunked: no length up front
            reply = ingest.too_large(self.endpoint, peer, started)
        if reply is None:
            reply = ingest.save(self.endpoint, self.request.body, peer, started)
        self.set_status(reply.status)
        for name, value in reply.extra:
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(reply.body)


class StatsHandler(IngestHandler):
    """GET /stats; POST /stats (see `IngestHandler`)."""

    endpoint = "stats"

    def get(self) -> None:
        self.require_view()
        self.send_json(self.ctx.store.stats_list())


class ResourcesHandler(IngestHandler):
    """GET /resources; POST /resources (see `IngestHandler`)."""

    endpoint = "resources"

    def get(self) -> None:
        self.require_view()
        self.send_json(self.ctx.store.resources_list())


class OverviewHandler(JSONHandler):
    def get(self) -> None:
        self.require_view()
        self.send_json(self.ctx.hub.overview_json())


class SeriesHandler(JSONHandler):
    """GET /api/series?scope=&window=SECONDS[&end=EPOCH]: any window up to the retention, now or ending at `end`."""

    async def get(self) -> None:
        self.require_view()
        scope = self.get_query_argument("scope", "all")
        lookback, retention = self.ctx.hub.lookback, self.ctx.config.retention
        end_text = self.get_query_argument("end", None)
        end = None
        try:
            window = parse_window(self.get_query_argument("window", "300"), retention, lookback.longest)
            if end_text is not None:
                end = parse_end(end_text, window, self.ctx.store.clock(), retention)
        except WindowError as exc:
            raise HTTPError(400, str(exc)) from None
        if not (scope == "all" or scope.startswith(("app:", "pod:"))) or len(scope) > 300:
            raise HTTPError(400, "scope must be all, app:NAME or pod:NAME")
        series = await lookback.series(scope, window, end)
        if series is None:
            raise HTTPError(404, f"no such scope: {scope[:100]}")
        self.send_json(series)


class AlertsHandler(JSONHandler):
    """GET /api/alerts: what is firing, and the state of each app and pod it touches."""

    def get(self) -> None:
        self.require_view()
        alerts = self.ctx.alerts
        self.send_json(alerts.health() if alerts is not None else {"firing": [], "apps": {}, "pods": {}})


class RoutesHandler(JSONHandler):
    """GET /api/routes?start=EPOCH&end=EPOCH[&app=NAME]: the routes table of a past range, from history."""

    async def get(self) -> None:
        self.require_view()
        try:
            start, end = parse_range(self.get_query_argument("start", None), self.get_query_argument("end", None),
                                     self.ctx.store.clock(), self.ctx.config.retention)
            self.send_json(await self.ctx.hub.lookback.routes(start, end, self.get_query_argument("app", None)))
        except WindowError as exc:
            raise HTTPError(400, str(exc)) from None


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


def render_page(settings: dict[str, Any]) -> bytes:
    """The page from its template, rendered once with no handler in reach. A render leaves a reference
    cycle behind (the template's namespace is its code's globals), which only the collector frees, and
    the dashboard freezes the collector (app.dashboard.server, GC_YOUNG_THRESHOLD): rendered by
    `render_string`, the first page's handler was held in that cycle and sometimes frozen with it."""
    static_files = settings.get("static_handler_class", StaticFileHandler)
    page = template.Loader(settings["template_path"]).load("index.html")
    return page.generate(static_url=lambda path: static_files.make_static_url(settings, path))


class PageHandler(JSONHandler):
    """GET /: the live page. `?token=` (the view token) becomes a cookie, then a clean URL."""

    def get(self) -> None:
        self.require_view()
        view_token = self.ctx.config.view_token
        if view_token and self.get_query_argument("token", None) is not None:
            self.set_cookie(auth.VIEW_COOKIE, auth.view_cookie(view_token), httponly=True, samesite="Strict",
                            secure=self._over_tls())
            self.redirect("/")  # keep the token out of the address bar and history
            return
        if not (paths.TEMPLATES_DIR / "index.html").is_file():
            raise HTTPError(503, "the page's template (templates/index.html) is not installed")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Referrer-Policy", "no-referrer")
        if self.ctx.page is None:
            self.ctx.page = render_page(self.settings)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.ctx.page)

    def _over_tls(self) -> bool:
        """Whether the browser reached us over TLS: directly, or (when trusted) through a proxy that says so."""
        if self.request.protocol == "https":
            return True
        forwarded = self.request.headers.get("X-Forwarded-Proto", "")
        return self.ctx.config.trust_forwarded_proto and forwarded.split(",")[0].strip().lower() == "https"
