"""`run(config)`: the sidecar process — proxy, buffer, reporter, sampler and admin port wired together.

`Sidecar` owns the parts and their order of start and stop; `run` gives it
an event loop and turns SIGTERM/SIGINT into a graceful stop: readiness goes
503, the proxy stops accepting, exchanges in flight get `grace_period` to
finish, and a final batch is sent before the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import Resolver

from app.core.sample import Record
from app.options import SidecarConfig, display_url
from sidecar.admin import AdminState, make_admin_app
from sidecar.metrics import SidecarMetrics
from sidecar.pod.sampler import ResourceSampler
from sidecar.proxy import SidecarServer
from sidecar.report.buffer import SampleBuffer
from sidecar.report.reporter import Reporter
from sidecar.resolver import CachingResolver

log = logging.getLogger("mothership.sidecar")

FLUSH_TIMEOUT = 5.0  # seconds for the final batch on shutdown, after the drain
# Tornado's default of 128 makes a burst of new connections beyond it wait for a
# 1 s SYN retransmit while the loop is busy; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.buffer = SampleBuffer(config.pod, config.app_name, max_bytes=config.buffer_bytes,
                                   max_samples_per_batch=config.max_samples_per_batch, namespace=config.namespace)
        self.metrics = SidecarMetrics()
        self.metrics.identify(pod=config.pod, app=config.app_name, namespace=config.namespace)
        self.sampler = ResourceSampler()
        self.reporter = Reporter(config, self.buffer, self.sampler, self.metrics)
        # With nowhere to send them, exchanges only feed /metrics: a buffer
        # that is never sealed would just fill up and count drops.
        self._add = self.buffer.add_record  # bound once: on_record runs once per exchange
        self._observe = self.metrics.observe_record
        self.server = SidecarServer(config, on_record=self.on_record if config.dashboard else self._observe)
        self.admin_state = AdminState(config.target_host, config.target_port)
        self.admin = HTTPServer(make_admin_app(self.metrics.registry, self.admin_state))
        self.metrics.watch(buffer=self.buffer, proxy=lambda: self.server.counters,
                           resources=lambda: self.sampler.latest)

    def on_record(self, record: Record) -> None:
        """Called by the proxy once per finished exchange, on its hot path (it
        catches, counts and logs what this raises)."""
        self._add(record)
        self._observe(record)

    def start(self) -> None:
        config = self.config
        self.server.listen(config.port, config.host, backlog=LISTEN_BACKLOG)
        self.admin.listen(config.admin_port, config.host)
        self.reporter.start()
        where = (f"reporting to {display_url(config.dashboard)} every {config.stats_interval:g}s"
                 if config.dashboard else "not reporting (no --dashboard)")
        loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio's loop"
        log.info("sidecar %s (app %s): :%d -> %s:%d, admin :%d, %s, on %s", config.pod, config.app_name,
                 config.port, config.target_host, config.target_port, config.admin_port, where, loop)

    async def shutdown(self) -> None:
        config = self.config
        self.admin_state.draining = True
        self.server.stop()
        drained = await self.server.drain(config.grace_period)
        if not drained:
            log.warning("exchanges still in flight after the %gs grace period: closing them", config.grace_period)
        self.server.close_all()  # cut exchanges are still reported, so this comes before the flush
        await self.reporter.stop()
        delivered = await self.reporter.flush(FLUSH_TIMEOUT)
        if self.reporter.enabled and not delivered:
            log.warning("the final batch did not reach the dashboard: %d exchanges not delivered",
                        self.buffer.queued_exchanges)
        self.reporter.close()
        self.admin.stop()
        if self.reporter.enabled:
            log.info("sidecar stopped (%d exchanges recorded, %d batches delivered)",
                     self.buffer.stats.recorded, self.buffer.stats.delivered)
        else:
            log.info("sidecar stopped")


# The collector's youngest generation is collected every this many allocations (Python's default is 700),
# the middle one every GC_MIDDLE_THRESHOLD young passes and the oldest every GC_OLD_THRESHOLD middle ones:
# in effect rarely (the defaults are 10 and 10).
GC_YOUNG_THRESHOLD = 20_000
GC_MIDDLE_THRESHOLD = 50
GC_OLD_THRESHOLD = 1_000


def settle_collector() -> None:
    """After start-up: what start-up made is frozen out of the collector's passes, and its generations
    run every GC_YOUNG_THRESHOLD allocations, GC_MIDDLE_THRESHOLD and GC_OLD_THRESHOLD passes. An
    exchange's objects hold no cycles (reference counting frees them); with the defaults, at 64
    connections, the passes over the live connections cost about a tenth of the relay's CPU, and the
    full passes over the open batch's samples 6-7% more (README, "Speed"). Cycles are still collected
    (a young pass finds what died young); a closed connection leaves none (its sides drop their
    handlers when lost: sidecar.sides)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)


async def serve(config: SidecarConfig) -> int:
    sidecar = Sidecar(config)
    sidecar.start()
    settle_collector()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("signal received: draining (up to %gs)%s", config.grace_period,
             ", then sending the final batch" if config.dashboard else "")
    forced = asyncio.Event()
    for sig in signals:  # a second signal means "now"
        loop.add_signal_handler(sig, forced.set)
    shutdown = asyncio.ensure_future(sidecar.shutdown())
    force = asyncio.ensure_future(forced.wait())
    await asyncio.wait((shutdown, force), return_when=asyncio.FIRST_COMPLETED)
    force.cancel()
    # Done (or giving up): from here a late signal must not turn the exit into
    # 143. Removed from the loop first, or closing it would restore SIG_DFL.
    for sig in signals:
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    if not shutdown.done():
        shutdown.cancel()
        log.warning("second signal: stopping without waiting")
        return 1
    shutdown.result()
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop (libuv) where it is installed, else asyncio's default: the relay's transports and
    callbacks cost about half as much on it. Tornado runs on either unchanged."""
    if os.environ.get("MOTHERSHIP_LOOP", "") == "asyncio":  # to compare, or to rule uvloop out
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(config: SidecarConfig) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every Resolver() made in this process (the reporter's HTTP client, the
    # readiness check's TCP client) reads IP literals at once and caches names,
    # instead of taking a thread pool hop per lookup.
    Resolver.configure(CachingResolver)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(config))
    except OSError as exc:  # a port in use, most often
        log.error("cannot start the sidecar: %s", exc)
        return 1
