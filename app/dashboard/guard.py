"""What the dashboard's application refuses before any handler reads data, and how it logs requests.

A request whose `Host` the `HostGate` does not allow gets 421 whatever it
asked for (DNS rebinding: app.dashboard.hosts). Static files refuse a NUL or
undecodable path with 400 (Tornado would open the file and fail with a 500).
`SafeLogging` keeps query strings (the view token) and request reprs out of
the log; `log_request` logs refused and failed requests only.
"""

from __future__ import annotations

import logging
from types import TracebackType

from tornado.log import access_log, app_log, gen_log
from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from app.dashboard.logsafe import request_summary
from app.dashboard.metrics import DashboardMetrics


class SafeLogging(RequestHandler):
    """Requests named by method, path and peer only; an uncaught exception logged without the request's repr."""

    def _request_summary(self) -> str:
        return request_summary(self.request)

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        if isinstance(value, HTTPError):
            message = value.get_message()
            if message:
                gen_log.warning("%d %s: %s", value.status_code, self._request_summary(), message)
        else:  # Tornado's own adds repr(request): its URI holds the query string
            app_log.error("Uncaught exception %s", self._request_summary(), exc_info=value)


class WrongHost(SafeLogging):
    """Any request whose Host is not allowed: 421 and a JSON error, nothing else."""

    def initialize(self, metrics: DashboardMetrics) -> None:
        self.metrics = metrics

    def prepare(self) -> None:
        self.metrics.http_refused["wrong_host"].inc()
        self.set_status(421)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(b'{"error":"this Host is not one the dashboard is known by; add it to --allowed-hosts"}')


class SafeStaticFiles(StaticFileHandler, SafeLogging):
    """Tornado's static files, with a NUL in the path refused as a bad request (and counted)."""

    def initialize(self, path: str, default_filename: str | None = None, *,  # type: ignore[override]
                   metrics: DashboardMetrics) -> None:
        super().initialize(path, default_filename)
        self.metrics = metrics

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            self.metrics.http_refused["bad_path"].inc()
            raise HTTPError(400, "a NUL in the path")
        return str(super().parse_url_path(url_path))


def log_request(handler: RequestHandler) -> None:
    """Log refused and failed requests only: thousands of sidecars posting every second would drown the log."""
    status = handler.get_status()
    if status >= 400:
        request = handler.request
        level = logging.ERROR if status >= 500 else logging.WARNING
        access_log.log(level, "%d %s %.2fms", status, request_summary(request), 1000.0 * request.request_time())
