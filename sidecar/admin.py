"""The sidecar's admin HTTP app: `/healthz`, `/readyz` and `/metrics`.

Kept on its own port (`--admin-port`) so probes and Prometheus scrapes never
pass through, or get counted by, the proxy. `/healthz` answers 200 while the
process runs; `/readyz` answers 200 only when the app behind us accepts a TCP
connection and we are not shutting down; `/metrics` is the Prometheus text
(or OpenMetrics, when asked) rendering of the sidecar's own registry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from tornado.tcpclient import TCPClient
from tornado.web import Application, RequestHandler

log = logging.getLogger("mothership.sidecar.admin")
READY_CONNECT_TIMEOUT = 1.0  # seconds: kubelet's default probe timeout is 1 s


@dataclass
class AdminState:
    target_host: str
    target_port: int
    draining: bool = False  # set on SIGTERM: stop getting new traffic routed here


class _Handler(RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "text/plain; charset=utf-8")


class HealthHandler(_Handler):
    def get(self) -> None:
        self.finish("ok\n")

    head = get


class ReadyHandler(_Handler):
    def initialize(self, state: AdminState) -> None:
        self.state = state

    async def get(self) -> None:
        if self.state.draining:
            self.set_status(503)
            self.finish("draining\n")
            return
        where = f"{self.state.target_host}:{self.state.target_port}"
        try:
            stream = await TCPClient().connect(self.state.target_host, self.state.target_port,
                                               timeout=READY_CONNECT_TIMEOUT)
        except Exception as exc:  # refused, timed out, unresolvable: all "not ready"
            self.set_status(503)
            self.finish(f"target {where} does not accept connections: {type(exc).__name__}\n")
            return
        stream.close()
        self.finish(f"ready: target {where} accepts connections\n")

    head = get


class MetricsHandler(_Handler):
    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        encoder, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(encoder(self.registry))


def make_admin_app(registry: CollectorRegistry, state: AdminState) -> Application:
    return Application([
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler, {"state": state}),
        (r"/metrics", MetricsHandler, {"registry": registry}),
    ], log_function=_quiet)


def _quiet(handler: RequestHandler) -> None:
    """Probes and scrapes every few seconds would flood the log: only errors are logged."""
    if handler.get_status() >= 500 and not isinstance(handler, ReadyHandler):
        log.warning(
            "%d %s %s", handler.get_status(), handler.request.method, handler.request.uri)
