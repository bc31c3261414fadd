"""`SidecarServer`: the relay in front of the app, on asyncio transports, that turns every HTTP exchange into a sample.

Each client connection becomes a `sidecar.connection.ProxiedConnection`
(its own connection to the app, the relay and the framing);
`sidecar.exchange.SampleMaker` turns each exchange it finishes into a sample
handed to `on_record` (as a `Record`; the sidecar's way) or `on_sample` (as
a wire sample), in batches a few milliseconds later (REPORT_DELAY) or when
its connection closes, whichever comes first.

Public surface:
    server = SidecarServer(config, on_sample) / SidecarServer(config, on_record=on_record)
    server.listen(port, address, backlog) / server.add_sockets(sockets, backlog)
                                  serve (from within the running loop; as Tornado's TCPServer)
    server.stop()                 stop accepting connections
    await server.drain(timeout)   close idle connections, wait for exchanges
                                  in flight; True if all finished in time
    server.close_all()            close every connection now, hand over every sample
    server.counters               read-only `ProxyCounters`:
        connections_open, connections_total   client connections
        exchanges_in_flight   exchanges begun, sample not yet handed over
        exchanges_total       exchanges finished
        upstream_errors   {"upstream_unavailable" | "upstream_timeout" |
                           "upstream_reset": n}, counted per sample
        client_closed     exchanges the client abandoned
        bad_requests      requests refused with 400 or 431
        timeouts          {"idle" | "header" | "body": n} connections closed
        sample_errors     exceptions raised by on_record / on_sample (logged, swallowed)
        protocols         {"http1" | "h2" | "tls" | "tcp": n} connections by how they were relayed
                          (an h2c upgrade counts under http1 and h2)
        opaque            {reason: n} connections relayed as opaque, by why (OPAQUE_REASONS)
        untracked         connections whose HTTP/2 tracking stopped (their bytes still flowed)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from app.core.routes import RouteCap
from app.core.sample import Record
from app.core.wire import Sample
from app.options import SidecarConfig
from sidecar.connection import ProxiedConnection
from sidecar.detect import PROTOCOLS
from sidecar.exchange import Exchange, SampleMaker
from sidecar.resolver import CachingResolver
from sidecar.sides import Side

log = logging.getLogger(__name__)

MAX_ROUTES = 500
# Finished exchanges become samples in batches, this long after the first of
# them ended: the sample and telemetry code run many times in a row stay in
# the CPU's caches, which once per exchange, between relay steps, they do not
# (about 5 us of CPU per exchange, measured). Counters are updated at once.
REPORT_DELAY = 0.005

UPSTREAM_ERRORS = ("upstream_unavailable", "upstream_timeout", "upstream_reset")
# Why a connection was relayed as opaque: a TLS ClientHello, bytes that are not HTTP, a client silent for
# detect_timeout, an app that spoke first, or --protocol opaque.
OPAQUE_REASONS = ("tls", "not_http", "client_silent", "server_first", "forced")

monotonic: Final = time.monotonic  # a static, not a lookup in the module's namespace, once compiled


@dataclass
class ProxyCounters:
    """Totals for /metrics; the proxy writes them, everyone else only reads."""

    connections: set[ProxiedConnection] = field(default_factory=set, repr=False)
    connections_total: int = 0
    exchanges_total: int = 0
    upstream_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UPSTREAM_ERRORS, 0))
    client_closed: int = 0
    bad_requests: int = 0
    timeouts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("idle", "header", "body"), 0))
    sample_errors: int = 0
    protocols: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0))  # relayed as, by connection
    opaque: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPAQUE_REASONS, 0))
    untracked: int = 0  # connections whose observer lost the protocol's framing (bytes still flowed)
    unreported: list[Exchange] = field(default_factory=list, repr=False)  # finished, sample not made yet

    @property
    def connections_open(self) -> int:
        return len(self.connections)

    @property
    def exchanges_in_flight(self) -> int:
        """Exchanges begun and not yet handed to on_sample. Counted when asked (a scrape, a drain),
        so the relay does no bookkeeping per exchange."""
        return sum(conn.live for conn in self.connections) + len(self.unreported)


class SidecarServer:
    """Accepts clients, relays each to config.target_host:target_port, and reports every exchange."""

    def __init__(self, config: SidecarConfig, on_sample: Callable[[Sample], None] | None = None, *,
                 on_record: Callable[[Record], None] | None = None) -> None:
        self.config = config
        if (on_sample is None) == (on_record is None):
            raise ValueError("SidecarServer takes one of on_sample and on_record")
        if on_record is None:
            assert on_sample is not None
            on_record = _as_samples(on_sample)
        self.on_record = on_record
        self.counters = ProxyCounters()
        self._connections = self.counters.connections
        self.draining = False
        self.samples = SampleMaker(record_query=config.record_query, route_cap=RouteCap(MAX_ROUTES))
        self.samples.clock_offset = time.time() - monotonic()
        self._sweeper: PeriodicCallback | None = None
        self.lingering: set[ProxiedConnection] = set()  # closed, their clients read out after an error response
        self.flushing: dict[Side, float] = {}  # closed sides still sending what they hold, by when they must end
        self._unreported = self.counters.unreported
        self._report_timer: asyncio.TimerHandle | None = None
        self.resolver = CachingResolver()  # a target name is looked up at most every few seconds, an IP never
        self._listeners: list[asyncio.AbstractServer] = []
        self._starting: set[asyncio.Task[None]] = set()
        self._stopped = False

    # --- listening (what Tornado's TCPServer offered) ------------------------------------

    def listen(self, port: int, address: str = "", backlog: int = 128) -> None:
        self.add_sockets(bind_sockets(port, address or None, backlog=backlog), backlog)

    def add_sockets(self, sockets: list[socket.socket], backlog: int = 128) -> None:
        """Serve on listening sockets; connections wait in the kernel's queue until the loop takes them."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            task = loop.create_task(self._serve(sock, backlog))
            self._starting.add(task)  # a strong reference until it is done
            task.add_done_callback(self._starting.discard)

    async def _serve(self, sock: socket.socket, backlog: int) -> None:
        # create_server listens again, with the backlog asked for (its own default is 100).
        accept: Any = self._accept  # makes a Side: a protocol by its methods (sidecar.sides)
        listener = await asyncio.get_running_loop().create_server(accept, sock=sock, backlog=backlog)
        if self._stopped:
            listener.close()
        else:
            self._listeners.append(listener)

    def _accept(self) -> Side:
        return ProxiedConnection(self).client

    def stop(self) -> None:
        """Accept no more connections (those open go on)."""
        self._stopped = True
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def opened(self, conn: ProxiedConnection) -> None:
        """A client connected (its connection's first step)."""
        if self._sweeper is None:
            interval = min(self.config.idle_timeout, self.config.header_timeout) / 4
            self._sweeper = PeriodicCallback(self._sweep, 1000 * min(1.0, max(0.01, interval)))
            self._sweeper.start()
        self._connections.add(conn)
        self.counters.connections_total += 1

    # --- shutting down ----------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Stop taking new exchanges on idle connections; wait for those in flight. True if all ended."""
        self.draining = True
        for conn in list(self._connections):
            if conn.idle:
                conn.close("done")
        deadline = monotonic() + timeout
        while self.counters.exchanges_in_flight > 0:
            left = deadline - monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.02, left))
        return True

    def close_all(self) -> None:
        """Close every connection now (exchanges cut short are reported) and stop the timers."""
        for conn in list(self._connections):
            conn.close("error")
        for conn in list(self.lingering):
            conn.end_linger(flush=False)
        for side in list(self.flushing):
            side.shut(False)
        self.flushing.clear()
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    # --- used by connections -----------------------------------------------------

    def shut(self, side: Side, flush: bool) -> None:
        """Close a side; one that must first send what it holds gets until idle_timeout to do it (a peer that
        never reads cannot keep it open)."""
        side.shut(flush)
        if flush and side.transport.get_write_buffer_size():
            self.flushing[side] = monotonic() + self.config.idle_timeout

    def record(self, ex: Exchange) -> None:
        """An exchange is over: count it now; its sample follows within REPORT_DELAY."""
        counters = self.counters
        counters.exchanges_total += 1
        error = ex.error
        if error is not None:
            if error in counters.upstream_errors:
                counters.upstream_errors[error] += 1
            elif error == "client_closed":
                counters.client_closed += 1
        unreported = self._unreported
        unreported.append(ex)
        if len(unreported) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # closed from outside the loop (close_all at teardown): `forget` reports
                return
            self._report_timer = loop.call_later(REPORT_DELAY, self.report)

    def report(self) -> None:
        """Hand every finished exchange's sample over now."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        batch = self._unreported[:]
        self._unreported.clear()
        make, on_record, counters = self.samples.record, self.on_record, self.counters
        for ex in batch:
            try:
                on_record(make(ex))
            except Exception:
                counters.sample_errors += 1
                n = counters.sample_errors
                if n & (n - 1) == 0:  # 1st, 2nd, 4th, ...: a broken callback must not flood the log
                    log.error("on_sample failed (%d times so far)", n, exc_info=True)

    def forget(self, conn: ProxiedConnection) -> None:
        self._connections.discard(conn)
        if self._unreported:  # a closed connection's samples are all out by the time it is not counted open
            self.report()

    def _sweep(self) -> None:
        now = monotonic()
        self.samples.clock_offset = time.time() - now  # follows wall-clock steps
        for conn in list(self._connections):
            conn.check_timeouts(now)
        if self.flushing:
            for side, deadline in list(self.flushing.items()):
                if side.transport.get_write_buffer_size() == 0:
                    del self.flushing[side]
                elif now > deadline:
                    del self.flushing[side]
                    side.shut(False)


def _as_samples(on_sample: Callable[[Sample], None]) -> Callable[[Record], None]:
    """What hands a record to a callback that takes wire samples."""
    def take(record: Record) -> None:
        on_sample(record.to_sample())
    return take
