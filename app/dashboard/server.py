"""The dashboard process: `make_app` wires store, hub, history and handlers; `run` serves.

`make_app(config, clock=...)` restores history, then starts the once-a-second
tick (staleness, live push) and the history writer on the current IOLoop.
`run(config)` serves until SIGTERM or SIGINT, then writes history a last time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import PeriodicCallback
from tornado.web import Application, _HandlerDelegate

from app import paths
from app.dashboard import handlers, logsafe
from app.dashboard.aggregate import Clock, PodStore
from app.dashboard.alerts.service import AlertService
from app.dashboard.context import Context
from app.dashboard.front import Front
from app.dashboard.guard import SafeStaticFiles, WrongHost, log_request
from app.dashboard.heads import HEAD_TIMEOUT, HeadWatch
from app.dashboard.history import History, Prune
from app.dashboard.hosts import HostGate
from app.dashboard.hub import LiveHub, LiveSocket
from app.dashboard.ingest import Ingest
from app.dashboard.lookback import Lookback
from app.dashboard.metrics import DashboardMetrics
from app.dashboard.trim import TRIM_EVERY, trim
from app.options import DashboardConfig

log = logging.getLogger("mothership.dashboard")

ALERT_INTERVAL = 5.0  # seconds between evaluations of the embedded alerts
PRUNE_EVERY = 60.0  # seconds between deletions of history past the retention
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# Objects allocated between two collections of the youngest generation (Python's default: 700).
# Every POST allocates hundreds of short-lived containers (its decoded JSON): at the default,
# collections run thousands of times a second and walk whatever is alive at that moment, and
# survivors climb into the older generations, which were a quarter of the process's CPU at
# 2000 pods. Most of those objects are freed by their reference counts well before 20000.
GC_YOUNG_THRESHOLD = 20_000
# What the store keeps lives for the retention (an hour) and what a history write takes is freed by
# reference counts once written: neither needs the cycle collector, yet each young collection walked
# all that had arrived since the last, and each middle one again: collections of 80-240 ms at 2000
# pods, every POST waiting behind them (p99 150-185 ms). So what is alive after each tick and after
# each drain is frozen (gc.freeze: never walked again, still freed by reference counts). The price:
# a reference cycle alive at a freeze and dropped later is never collected. Under load the collector
# found ~0 cyclic garbage a second, and Tornado breaks its handlers' cycles itself; the tests bound it.


class Dashboard:
    """The store, the hub, history, and the periodic work that ties them together."""

    def __init__(self, config: DashboardConfig, clock: Clock = time.time, *, tick_interval: float = 1.0,
                 flush_interval: float = 2.0, head_timeout: float = HEAD_TIMEOUT, freeze: bool = False,
                 alert_interval: float = ALERT_INTERVAL, alert_warmup: float | None = None) -> None:
        self.config = config
        self.freeze = freeze  # gc.freeze after each tick and drain (see GC_YOUNG_THRESHOLD)
        self.heads = HeadWatch(head_timeout)
        self.clock = clock
        self.tick_interval = tick_interval
        self.flush_interval = flush_interval
        self.history = None if config.data == ":memory:" else History(config.data)
        self.store = PodStore(retention=config.retention, stale_after=config.stale_after,
                              drop_after=config.drop_after, clock=clock, max_pods=config.max_pods,
                              max_apps=config.max_apps, overview_pods=config.overview_pods,
                              archive=self.history is not None)
        self.metrics = DashboardMetrics()
        self.alert_interval = alert_interval
        self.alerts = AlertService(config, clock, warmup=alert_warmup,
                                   on_result=lambda receiver, ok: self.metrics.alert_notices[
                                       receiver, "delivered" if ok else "failed"].inc())
        self.lookback = Lookback(self.store, None if self.history is None else config.data)
        self.hub = LiveHub(self.store, self.metrics, self.alerts, self.lookback)
        self.ctx = Context(config=config, store=self.store, hub=self.hub, metrics=self.metrics,
                                    alerts=self.alerts, hosts=HostGate(config.allowed_hosts))
        if self.history is not None:
            started = time.perf_counter()
            self.store.restore(self.history.load(clock(), config.retention, config.drop_after))
            log.info("history restored from %s in %.2fs: %d pods", config.data, time.perf_counter() - started,
                     len(self.store.pods))
        # What was restored lives long: keep the collector from walking it again and again
        # (a full collection over millions of buckets pauses the loop for a noticeable time).
        gc.collect()
        gc.freeze()
        trim()  # what reading it back allocated and freed: given back, not kept resident
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mothership-history")
        self._writing: asyncio.Future[int] | None = None
        self._last_prune = 0.0
        self._callbacks: list[PeriodicCallback] = []

    def start(self) -> None:
        """Start the tick and the history writer on the current IOLoop."""
        self._callbacks = [PeriodicCallback(self.tick, self.tick_interval * 1000),
                           PeriodicCallback(self.heads.sweep, min(5.0, self.heads.timeout / 3) * 1000),
                           PeriodicCallback(trim, TRIM_EVERY * 1000),
                           PeriodicCallback(self.check_alerts, self.alert_interval * 1000)]
        if self.history is not None:
            self._callbacks.append(PeriodicCallback(self.flush, self.flush_interval * 1000))
        for callback in self._callbacks:
            callback.start()

    async def tick(self) -> None:
        self.store.tick()
        await self.hub.push()
        if self.freeze:
            gc.freeze()

    async def check_alerts(self) -> None:
        await self.alerts.cycle()
        self.metrics.alerts_firing.set(len(self.alerts.evaluator.firing))

    async def flush(self, final: bool = False) -> int:
        """Hand what changed to the history thread; skipped while the last write still runs."""
        if self.history is None or (self._writing is not None and not self._writing.done()):
            return 0
        changes = self.store.drain(final)
        if self.freeze:
            gc.freeze()
        now = self.clock()
        prune = None
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            prune = Prune(now, self.config.retention)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(self._executor, self.history.write, changes, prune)
        try:
            rows = await self._writing
        except Exception:
            log.error("writing history to %s failed", self.config.data, exc_info=True)
            self.metrics.history_errors.inc()
            self.ctx.history_ok = False
            return 0
        self.ctx.history_ok = True
        self.metrics.history_rows.inc(rows)
        self.metrics.history_seconds.observe(time.perf_counter() - started)
        return rows

    async def stop(self) -> None:
        """Stop ticking, write what is left, close the file."""
        for callback in self._callbacks:
            callback.stop()
        for socket in list(self.hub.clients):
            socket.close(1001, "dashboard stopping")
        await self.alerts.stop()
        if self._writing is not None:
            await asyncio.wait([self._writing])
        if self.history is not None:
            await self.flush(final=True)
            self.history.close()
        self._executor.shutdown(wait=True)
        self.lookback.close()


class DashboardApplication(Application):
    """A Tornado application carrying its `Dashboard` (for `run` and tests; handlers get a Context).

    The sidecars' POSTs never reach it: `listen` serves those below Tornado.
    """

    def __init__(self, dashboard: Dashboard, **settings: Any) -> None:
        self.dashboard = dashboard
        ctx = {"ctx": dashboard.ctx}
        config = dashboard.config
        self.hosts = dashboard.ctx.hosts
        self.metrics = dashboard.metrics
        super().__init__([
            (r"/", handlers.PageHandler, ctx),
            (r"/stats", handlers.StatsHandler, ctx),
            (r"/resources", handlers.ResourcesHandler, ctx),
            (r"/api/overview", handlers.OverviewHandler, ctx),
            (r"/api/series", handlers.SeriesHandler, ctx),
            (r"/api/alerts", handlers.AlertsHandler, ctx),
            (r"/api/routes", handlers.RoutesHandler, ctx),
            (r"/healthz", handlers.HealthHandler, ctx),
            (r"/metrics", handlers.MetricsHandler, ctx),
            (r"/ws", LiveSocket, {"hub": dashboard.hub, "view_token": config.view_token,
                                  "allowed_origins": config.allowed_origins, "hosts": dashboard.ctx.hosts}),
        ], **settings)

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> _HandlerDelegate:
        """A Host that is not allowed gets `WrongHost` (421), whatever the path: before any data."""
        if not self.hosts.allows(request.headers.get("Host")) or len(request.headers.get_list("Host")) > 1:
            return self.get_handler_delegate(request, WrongHost, {"metrics": self.metrics})
        return super().find_handler(request, **kwargs)


def make_app(config: DashboardConfig, clock: Clock = time.time, *, tick_interval: float = 1.0,
             flush_interval: float = 2.0, head_timeout: float = HEAD_TIMEOUT, freeze: bool = False,
             start: bool = True, alert_interval: float = ALERT_INTERVAL,
             alert_warmup: float | None = None) -> DashboardApplication:
    """The dashboard's Tornado application; with `start`, its periodic work runs on the current IOLoop."""
    dashboard = Dashboard(config, clock, tick_interval=tick_interval, flush_interval=flush_interval,
                          head_timeout=head_timeout, freeze=freeze, alert_interval=alert_interval,
                          alert_warmup=alert_warmup)
    app = DashboardApplication(
        dashboard,
        template_path=str(paths.TEMPLATES_DIR),
        static_path=str(paths.STATIC_DIR),
        websocket_ping_interval=20,
        websocket_max_message_size=64 * 1024,
        log_function=log_request,
        static_handler_class=SafeStaticFiles,
        static_handler_args={"metrics": dashboard.metrics},
    )
    if start:
        dashboard.start()
    return app


def listen(app: DashboardApplication, port: int, host: str = "127.0.0.1") -> Front:
    """Serve `app` on `host:port`: the sidecars' POSTs straight off the socket, the rest through Tornado."""
    dashboard = app.dashboard
    heads = dashboard.heads
    # Body size is checked by the handlers (a 413, not a reset); the few connections that reach
    # Tornado get its own timeouts, the sidecars' are swept by the HeadWatch.
    app_server = HTTPServer(app, max_body_size=dashboard.config.max_body_bytes + (1 << 20),
                            idle_connection_timeout=heads.timeout, body_timeout=heads.timeout)
    front = Front(Ingest(dashboard.ctx), heads, app_server)
    # Thousands of sidecars connect at once after a dashboard restart: with Tornado's
    # default backlog of 128, the accept queue overflows and clients wait a whole SYN
    # retransmission (a second) to get in.
    front.listen(port, host, LISTEN_BACKLOG)
    return front


async def _serve(config: DashboardConfig) -> None:
    app = make_app(config, freeze=True)
    server = listen(app, config.port, config.host)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    history = "none (:memory:)" if config.data == ":memory:" else config.data
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    print(f"mothership dashboard on http://{shown}:{config.port}/ (history: {history})", flush=True)
    await stopping.wait()
    log.info("stopping: writing history")
    # Close the kept-alive connections before the last write: a POST acknowledged
    # on one of them after the write would be lost with the process.
    server.stop()
    await server.close_all_connections()
    await app.dashboard.stop()


def run(config: DashboardConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logsafe.install()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])  # for this process only: not in tests
    try:
        asyncio.run(_serve(config))
    except sqlite3.Error as exc:
        print(f"python -m app: error: --data: cannot use {config.data!r} for history ({exc})", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m app: error: --port: cannot listen on {config.host}:{config.port} ({exc.strerror})",
              file=sys.stderr)
        return 1
    return 0


__all__ = ["Dashboard", "DashboardApplication", "listen", "make_app", "run"]
