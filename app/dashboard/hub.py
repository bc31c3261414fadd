"""Live push to pages over `/ws`: `LiveHub` renders once per tick, `LiveSocket` delivers.

The overview is encoded once per change and shared by every client. Each
client holds at most one pending message per kind and writes only when its
previous write has completed, so a slow or stuck client gets the newest data
later, never a queue, and never holds up the others (docs/live-protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Generator

import ujson
from tornado.concurrent import Future
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from app.dashboard import auth
from app.dashboard.aggregate import PodStore
from app.dashboard.alerts.service import AlertService
from app.dashboard.hosts import HostGate
from app.dashboard.jsontext import dumps
from app.dashboard.logsafe import request_summary
from app.dashboard.lookback import Lookback
from app.dashboard.metrics import DashboardMetrics
from app.dashboard.views import OVERVIEW_STEP, SERIES_STEPS, run_steps

log = logging.getLogger("mothership.dashboard")

TAIL_SECONDS = 30  # series points re-sent with each update
MAX_SCOPE_CHARS = 300
MAX_CLIENT_MESSAGES = 20  # per second; a client sending more is closed


class LiveHub:
    """The set of connected pages and what to send them."""

    def __init__(self, store: PodStore, metrics: DashboardMetrics, alerts: AlertService | None = None,
                 lookback: Lookback | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.alerts = alerts
        self._alerts_pushed = 0  # the alerts' version last offered to every client (0: nothing changed yet)
        self.lookback = lookback or Lookback(store, None)  # windows older than memory read the archive
        self.clients: set[LiveSocket] = set()
        self._overview: tuple[int, str] | None = None  # (store version, encoded Overview)
        self._pushed = -1
        self.overview_step = OVERVIEW_STEP  # seconds of building between two chances for POSTs

    def overview_json(self) -> str:
        """The Overview, encoded at once; rebuilt only when the store changed since the last build."""
        return run_steps(self._overview_steps(math.inf))

    def _overview_steps(self, budget: float) -> Generator[None, None, str]:
        """The Overview, encoded in steps of `budget` seconds (`PodStore.overview_steps`), or as last built."""
        version = self.store.version
        cached = self._overview
        if cached is not None and cached[0] == version:
            return cached[1]
        started = time.perf_counter()
        encoded = yield from self.store.overview_steps(budget)
        self.metrics.render_seconds.observe(time.perf_counter() - started)
        self._overview = (version, encoded)
        return encoded

    def series_message(self, scope: str, window: int, tail: int | None = None) -> str | None:
        data = self.store.series(scope, window, tail)
        if data is None:
            return None
        return dumps({"type": "series", "scope": scope, "window": window, "data": data})

    def alerts_message(self) -> str | None:
        """What is firing and the state of each app and pod (docs/live-protocol.md), or None without alerts."""
        if self.alerts is None:
            return None
        return dumps({"type": "alerts", "data": self.alerts.health()})

    async def full_series_message(self, scope: str, window: int) -> str | None:
        """A subscription's first series: the whole window (from memory and, past it, the archive)."""
        data = await self.lookback.series(scope, window)
        if data is None:
            return None
        return dumps({"type": "series", "scope": scope, "window": window, "data": data})

    def snapshot_message(self) -> str:
        return '{"type":"snapshot","data":' + self.overview_json() + "}"

    def join(self, client: LiveSocket) -> None:
        self.clients.add(client)
        self.metrics.ws_clients.set(len(self.clients))

    def leave(self, client: LiveSocket) -> None:
        self.clients.discard(client)
        self.metrics.ws_clients.set(len(self.clients))

    async def push(self) -> None:
        """Once a tick: one update for everyone if anything changed, plus each subscribed series' tail.

        The overview is built in steps, letting the sidecars' POSTs in between (at
        thousands of pods, building it at once held each of them up for tens of ms).
        """
        if self.alerts is not None and self.clients and self.alerts.version != self._alerts_pushed:
            self._alerts_pushed = self.alerts.version
            alerts = self.alerts_message()
            for client in list(self.clients):
                if alerts is not None:
                    client.offer("alerts", alerts)
        if not self.clients or self.store.version == self._pushed:
            return
        self._pushed = self.store.version
        steps = self._overview_steps(self.overview_step)
        while True:
            try:
                next(steps)
            except StopIteration as built:
                encoded: str = built.value
                break
            await asyncio.sleep(0)
        update = '{"type":"update","data":' + encoded + "}"
        tails: dict[tuple[str, int], str | None] = {}
        for client in list(self.clients):
            client.offer("update", update)
            if client.subscription is not None:
                key = client.subscription
                if key not in tails:
                    tails[key] = self.series_message(key[0], key[1], TAIL_SECONDS)
                message = tails[key]
                if message is not None:
                    client.offer("series", message)


class LiveSocket(WebSocketHandler):
    """One page's WebSocket: snapshot first, then the newest update whenever it can take one."""

    def initialize(self, hub: LiveHub, view_token: str, allowed_origins: tuple[str, ...],
                   hosts: HostGate | None = None) -> None:
        self.hub = hub
        self.hosts = hosts or HostGate()
        self.view_token = view_token
        self.allowed_origins = allowed_origins
        self.subscription: tuple[str, int] | None = None
        self._pending: dict[str, str] = {}
        self._writing = False
        self._budget_second = 0
        self._budget_used = 0

    def prepare(self) -> None:
        cookie = self.get_cookie(auth.VIEW_COOKIE)
        if not auth.view_ok(self.view_token, query_token=self.get_query_argument("token", None), cookie=cookie,
                            authorization=self.request.headers.get("Authorization")):
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Basic realm="mothership"')
            self.finish({"error": "the view token is missing or wrong"})

    def _request_summary(self) -> str:
        return request_summary(self.request)

    def check_origin(self, origin: str) -> bool:
        """Listed in --allowed-origins, or the page's own origin on an allowed host (a browser always sends Origin).

        Comparing the Origin with the Host alone let a rebinding page in (both
        were evil.example): the host must also be one the dashboard is known by.
        """
        if origin.rstrip("/") in self.allowed_origins or self.hosts.allows_origin(origin, self.request.host):
            return True
        self.hub.metrics.http_refused["wrong_origin"].inc()
        return False

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.hub.join(self)
        self._send(self.hub.snapshot_message())
        if self.hub.alerts is not None and self.hub.alerts.evaluator.firing:  # none firing: nothing to say
            self.offer("alerts", self.hub.alerts_message() or "")

    def on_close(self) -> None:
        self.hub.leave(self)
        self._pending.clear()

    async def on_message(self, message: str | bytes) -> None:
        second = int(time.monotonic())
        if second != self._budget_second:
            self._budget_second, self._budget_used = second, 0
        self._budget_used += 1
        if self._budget_used > MAX_CLIENT_MESSAGES:
            self.close(1008, "too many messages")
            return
        try:
            request = ujson.loads(message)
        except (ValueError, OverflowError, RecursionError):
            self._error("message is not valid JSON")
            return
        if not isinstance(request, dict) or request.get("type") != "subscribe":
            self._error('expected {"type": "subscribe", "scope": ..., "window": ...}')
            return
        scope, window = request.get("scope"), request.get("window", 300)
        if not isinstance(scope, str) or len(scope) > MAX_SCOPE_CHARS or window not in SERIES_STEPS:
            self._error(f"scope must be all, app:NAME or pod:NAME and window one of {sorted(SERIES_STEPS)}")
            return
        series = await self.hub.full_series_message(scope, int(window))
        if series is None:
            self._error(f"unknown scope {scope[:80]!r}")
            return
        self.subscription = (scope, int(window))
        self.offer("series", series)

    def _error(self, text: str) -> None:
        self.offer("error", dumps({"type": "error", "error": text}))

    def offer(self, kind: str, message: str) -> None:
        """Queue `message` as the one pending message of its kind, replacing an older one."""
        if kind in self._pending:
            self.hub.metrics.ws_skipped.inc()
        self._pending[kind] = message
        if not self._writing:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            kind = next(iter(self._pending))
            self._send(self._pending.pop(kind))

    def _send(self, message: str) -> None:
        try:
            future = self.write_message(message)
        except WebSocketClosedError:
            return
        self._writing = True
        self.hub.metrics.ws_messages.inc()
        future.add_done_callback(self._written)

    def _written(self, future: Future[None]) -> None:
        self._writing = False
        if future.exception() is None:
            self._drain()
