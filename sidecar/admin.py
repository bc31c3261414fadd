"""The sidecar's admin HTTP endpoints, `/healthz`, `/readyz` and `/metrics`, served on Tornado's HTTP layer.

Kept on its own port (`--admin-port`) so probes and Prometheus scrapes never
pass through, or get counted by, the proxy. `/healthz` answers 200 while the
process runs; `/readyz` answers 200 only when the app behind us accepts a TCP
connection and we are not shutting down; `/metrics` is the Prometheus text
(or OpenMetrics, when asked) rendering of the sidecar's own registry. Three
fixed paths need no routing, templates or cookies: an
`httputil.HTTPServerConnectionDelegate` serves them, and a sidecar never
imports `tornado.web` (1.7 MB of every pod's memory, issue 17).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from http.client import responses

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from tornado import httputil
from tornado.tcpclient import TCPClient

log = logging.getLogger("mothership.sidecar.admin")
READY_CONNECT_TIMEOUT = 1.0  # seconds: kubelet's default probe timeout is 1 s
TEXT = "text/plain; charset=utf-8"
# The methods each path takes; HEAD is for probes that only look at the status.
METHODS: dict[str, tuple[str, ...]] = {"/healthz": ("GET", "HEAD"), "/readyz": ("GET", "HEAD"), "/metrics": ("GET",)}


@dataclass
class AdminState:
    target_host: str
    target_port: int
    draining: bool = False  # set on SIGTERM: stop getting new traffic routed here


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = TEXT


def refusal(method: str, path: str) -> Answer | None:
    """404 for a path not served, 405 for a method its path does not take; None for a request to answer."""
    allowed = METHODS.get(path)
    if allowed is None:
        return Answer(404, b"not found: the admin port serves /healthz, /readyz and /metrics\n")
    if method not in allowed:
        return Answer(405, f"{path} takes {' and '.join(allowed)}\n".encode())
    return None


def head_lines(answer: Answer, path: str, now: float) -> httputil.HTTPHeaders:
    """The answer's headers: nothing cached anywhere (a probe's answer is only true now), the body's length
    (a HEAD's too, with no body sent) and, for a 405, the methods allowed (RFC 9110 15.5.6)."""
    headers = httputil.HTTPHeaders({
        "Content-Type": answer.content_type, "Cache-Control": "no-store",
        "Content-Length": str(len(answer.body)), "Date": httputil.format_timestamp(now)})
    if answer.status == 405:
        headers["Allow"] = ", ".join(METHODS[path])
    return headers


class AdminApp(httputil.HTTPServerConnectionDelegate):
    """What `tornado.httpserver.HTTPServer` calls for each request on the admin port."""

    def __init__(self, registry: CollectorRegistry, state: AdminState) -> None:
        self.registry = registry
        self.state = state

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> AdminRequest:
        return AdminRequest(self, request_conn)

    async def answer(self, method: str, path: str, headers: httputil.HTTPHeaders) -> Answer:
        refused = refusal(method, path)
        if refused is not None:
            return refused
        if path == "/healthz":
            return Answer(200, b"ok\n")
        if path == "/readyz":
            return await self.ready()
        encoder, content_type = choose_encoder(headers.get("Accept", ""))
        return Answer(200, encoder(self.registry), content_type)

    async def ready(self) -> Answer:
        state = self.state
        if state.draining:
            return Answer(503, b"draining\n")
        where = f"{state.target_host}:{state.target_port}"
        try:
            stream = await TCPClient().connect(state.target_host, state.target_port, timeout=READY_CONNECT_TIMEOUT)
        except Exception as exc:  # refused, timed out, unresolvable: all "not ready"
            return Answer(503, f"target {where} does not accept connections: {type(exc).__name__}\n".encode())
        stream.close()
        return Answer(200, f"ready: target {where} accepts connections\n".encode())


class AdminRequest(httputil.HTTPMessageDelegate):
    """One request on an admin connection, answered once it has been read whole (any body is dropped)."""

    def __init__(self, app: AdminApp, connection: httputil.HTTPConnection) -> None:
        self.app = app
        self.connection = connection
        self.method = ""
        self.uri = ""
        self.headers = httputil.HTTPHeaders()
        self._answering: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        assert isinstance(start_line, httputil.RequestStartLine)  # a server's connection reads requests
        self.method, self.uri, self.headers = start_line.method, start_line.path, headers

    def data_received(self, chunk: bytes) -> None:
        """No path takes a body: it is read, so the connection stays in step, and dropped."""

    def finish(self) -> None:
        self._answering = asyncio.create_task(self._respond())

    async def _respond(self) -> None:
        method, path = self.method, self.uri.partition("?")[0]
        # Probes and scrapes every few seconds would flood the log: only our own failures are logged (a
        # readyz 503 is an answer, the target down or us draining, not a failure of ours).
        try:
            answer = await self.app.answer(method, path, self.headers)
        except Exception:  # a collector that raises, say: the scrape gets a 500, the log says why
            log.error("500 %s %s", method, self.uri, exc_info=True)
            answer = Answer(500, b"internal error: see the sidecar's log\n")
        start = httputil.ResponseStartLine("HTTP/1.1", answer.status, responses.get(answer.status, ""))
        body = b"" if method == "HEAD" else answer.body
        self.connection.write_headers(start, head_lines(answer, path, time.time()), body)
        self.connection.finish()  # a client already gone: tornado drops the write, nothing raises


def make_admin_app(registry: CollectorRegistry, state: AdminState) -> AdminApp:
    """What `HTTPServer` serves on the admin port."""
    return AdminApp(registry, state)
