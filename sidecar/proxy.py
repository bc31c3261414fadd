"""`SidecarServer`: the Tornado TCP relay in front of the app that turns every HTTP exchange into a sample.

Each client connection gets its own connection to the app; bytes go both
ways unchanged and streaming, one chunk at a time, and a write is awaited
before the next read, so a slow reader slows the writer and memory stays
bounded. `sidecar.http1.ExchangeTracker` frames the bytes as they pass;
`sidecar.exchange.SampleMaker` turns each finished exchange into a sample
handed to `on_sample`, in batches a few milliseconds later (REPORT_DELAY) or
when its connection closes, whichever comes first.

Public surface:
    server = SidecarServer(config, on_sample)
    server.listen(port, address) / server.add_sockets(sockets)   (from TCPServer)
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
        sample_errors     exceptions raised by on_sample (logged, swallowed)

Behaviour worth knowing:
- The app is dialled when a client connects (overlapping the request's
  arrival); if that failed before the request came, it is tried once more.
  Still unreachable: 502 (504 after connect_timeout) to the first request.
- Requests the tracker refuses get 400 (431 for heads over
  max_header_bytes) once the responses before them are out; the client's
  connection is then half-closed and read out for a moment, so it sees the
  response instead of a reset.
- A tunnel (101, CONNECT) is one exchange, reported when the connection
  ends; `ttfb` counts from the first response byte, interim 1xx included.
  Bytes sent behind an Upgrade or CONNECT request are held (and the client
  is not read) until the app answers: a switch makes them tunnel bytes,
  anything else frames and checks them as HTTP.
- header_timeout runs from a head's first byte; idle_timeout closes a
  connection with nothing in flight (or a tunnel) that is silent both ways,
  and a request body that stalls. Waiting on the app has no time limit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tornado import gen
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer

from app.options import SidecarConfig
from app.routes import RouteCap
from app.wire import Sample
from sidecar.exchange import SampleMaker
from sidecar.heads import simple_response
from sidecar.http1 import Exchange, ExchangeTracker
from sidecar.resolver import CachingResolver

log = logging.getLogger(__name__)

CHUNK = 65536  # bytes read at once at most; also what one connection holds per direction
# Tornado allocates (and zeroes) a buffer of `read_chunk_size` for every read
# attempt, the ones that find nothing included: 64 KiB costs about 1.2 us more
# than 4 KiB, four times per small exchange. So each stream reads in chunks
# sized to its recent traffic (see `next_chunk_size`).
MIN_CHUNK = 4096
LINGER_SECONDS = 2.0  # after an error response, how long to read and drop what the client still sends
LINGER_BYTES = 1 << 20
MAX_ROUTES = 500
# Finished exchanges become samples in batches, this long after the first of
# them ended: the sample and telemetry code run many times in a row stay in
# the CPU's caches, which once per exchange, between relay steps, they do not
# (about 5 us of CPU per exchange, measured). Counters are updated at once.
REPORT_DELAY = 0.005

REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 504: "Gateway Timeout"}
UPSTREAM_ERRORS = ("upstream_unavailable", "upstream_timeout", "upstream_reset")

monotonic = time.monotonic


def next_chunk_size(size: int, n: int) -> int:
    """The read size after a read of `n` bytes in chunks of `size`: the most
    when it filled the chunk (more is waiting: a body streams), half when it
    used a quarter or less, never below MIN_CHUNK."""
    if n >= size:
        return CHUNK
    return max(MIN_CHUNK, size >> 1) if n << 2 < size else size


@dataclass
class ProxyCounters:
    """Totals for /metrics; the proxy writes them, everyone else only reads."""

    connections: set[_Connection] = field(default_factory=set, repr=False)
    connections_total: int = 0
    exchanges_total: int = 0
    upstream_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UPSTREAM_ERRORS, 0))
    client_closed: int = 0
    bad_requests: int = 0
    timeouts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("idle", "header", "body"), 0))
    sample_errors: int = 0
    unreported: list[Exchange] = field(default_factory=list, repr=False)  # finished, sample not made yet

    @property
    def connections_open(self) -> int:
        return len(self.connections)

    @property
    def exchanges_in_flight(self) -> int:
        """Exchanges begun and not yet handed to on_sample. Counted when asked (a scrape, a drain),
        so the relay does no bookkeeping per exchange."""
        return sum(conn.tracker.live for conn in self.connections) + len(self.unreported)


class SidecarServer(TCPServer):
    """Accepts clients, relays each to config.target_host:target_port, and reports every exchange."""

    def __init__(self, config: SidecarConfig, on_sample: Callable[[Sample], None]) -> None:
        super().__init__(max_buffer_size=4 * CHUNK, read_chunk_size=MIN_CHUNK)
        self.config = config
        self.on_sample = on_sample
        self.counters = ProxyCounters()
        self._connections = self.counters.connections
        self.draining = False
        self.samples = SampleMaker(record_query=config.record_query, route_cap=RouteCap(MAX_ROUTES))
        self.samples.clock_offset = time.time() - monotonic()
        self._sweeper: PeriodicCallback | None = None
        self.lingering: set[IOStream] = set()  # clients being read out after an error response
        self._connect_timeout = timedelta(seconds=config.connect_timeout)
        self._unreported = self.counters.unreported
        self._report_timer: asyncio.TimerHandle | None = None
        self.resolver = CachingResolver()  # a target name is looked up at most every few seconds, an IP never

    # --- TCPServer ------------------------------------------------------------

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        if self._sweeper is None:
            interval = min(self.config.idle_timeout, self.config.header_timeout) / 4
            self._sweeper = PeriodicCallback(self._sweep, 1000 * min(1.0, max(0.01, interval)))
            self._sweeper.start()
        conn = _Connection(self, stream)
        self._connections.add(conn)
        self.counters.connections_total += 1
        await conn.run()

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
        for client in list(self.lingering):
            client.close()
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    # --- used by connections -----------------------------------------------------

    async def open_upstream(self) -> IOStream:
        """A connected stream to the app; raises TimeoutError, StreamClosedError or OSError."""
        family, address = (await self.resolver.resolve(self.config.target_host, self.config.target_port))[0]
        stream = IOStream(socket.socket(family, socket.SOCK_STREAM),
                          max_buffer_size=4 * CHUNK, read_chunk_size=MIN_CHUNK)
        try:
            await gen.with_timeout(self._connect_timeout, stream.connect(address),
                                   quiet_exceptions=(StreamClosedError,))
        except BaseException:
            stream.close()
            raise
        stream.set_nodelay(True)
        return stream

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
        """Hand every finished exchange's sample to on_sample now."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        batch = self._unreported[:]
        self._unreported.clear()
        make, on_sample, counters = self.samples, self.on_sample, self.counters
        for ex in batch:
            try:
                on_sample(make(ex))
            except Exception:
                counters.sample_errors += 1
                n = counters.sample_errors
                if n & (n - 1) == 0:  # 1st, 2nd, 4th, ...: a broken callback must not flood the log
                    log.error("on_sample failed (%d times so far)", n, exc_info=True)

    def forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        if self._unreported:  # a closed connection's samples are all out by the time it is not counted open
            self.report()

    def _sweep(self) -> None:
        now = monotonic()
        self.samples.clock_offset = time.time() - now  # follows wall-clock steps
        for conn in list(self._connections):
            conn.check_timeouts(now)


class _Connection:
    """One client connection, its connection to the app, and the two pumps between them."""

    __slots__ = ("_connected", "_decided", "_failed_at", "_refusing", "_retried", "_tasks", "client", "closed",
                 "connect_error",
                 "last_client", "last_upstream", "server", "tracker", "upstream")

    def __init__(self, server: SidecarServer, client: IOStream) -> None:
        self.server = server
        self.client = client
        self.upstream: IOStream | None = None
        self.tracker = ExchangeTracker(server.config.max_header_bytes)
        self.closed = False
        self.connect_error = "upstream_unavailable"
        self.last_client = self.last_upstream = monotonic()
        self._refusing = 0  # 1: a refused request is waiting, 2: it is being answered
        self._failed_at = 0.0  # when connecting to the app last failed
        self._retried = False
        self._decided: asyncio.Future[None] | None = None  # set while reading waits on an Upgrade's answer
        self._connected: asyncio.Future[IOStream | None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        return self.tracker.live == 0

    async def run(self) -> None:
        try:
            self.client.set_nodelay(True)
            self._spawn(self._connect_and_relay())
            await self._pump_requests()
        except Exception:
            log.error("connection from client failed", exc_info=True)
            self.close("error")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._tasks.discard)

    async def _connect_and_relay(self) -> None:
        try:
            try:
                upstream = await self.server.open_upstream()
            except (TimeoutError, StreamClosedError, OSError) as exc:
                self.connect_error = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_unavailable"
                self._failed_at = monotonic()
                self._connected.set_result(None)
                return
            if self.closed:
                upstream.close()
                self._connected.set_result(None)
                return
            self.upstream = upstream
            self._connected.set_result(upstream)
            await self._pump_responses(upstream)
        except Exception:
            log.error("connection to the app failed", exc_info=True)
            self.close("error")

    # --- client -> app ------------------------------------------------------------

    async def _pump_requests(self) -> None:
        client, tracker = self.client, self.tracker
        while True:
            try:
                data = await client.read_bytes(CHUNK, partial=True)
            except StreamClosedError:
                self.close("client")
                return
            now = self.last_client = monotonic()
            size = client.read_chunk_size
            if len(data) >= size or (len(data) << 2 < size and size > MIN_CHUNK):
                client.read_chunk_size = next_chunk_size(size, len(data))
            out = tracker.feed_request(data, now)
            if out:
                upstream = self.upstream
                if upstream is None:
                    upstream = await self._connected
                    if upstream is None and not self._retried and self._failed_at < now:
                        # The app was down when the client connected; it may be up by now.
                        self._retried = True
                        self._connected = asyncio.get_running_loop().create_future()
                        self._spawn(self._connect_and_relay())
                        upstream = await self._connected
                    if upstream is None:
                        await self._answer_unreachable()
                        return
                try:
                    await upstream.write(out)
                except StreamClosedError:
                    self.close("upstream")
                    return
            if tracker.finished:
                self._emit()
            if tracker.refused is not None:
                await self._try_refusal()
                return  # nothing more is read from this client
            if tracker.awaiting_upgrade and not self.closed:
                # Read no further until the app says what the next bytes are; learn of the
                # client's leaving meanwhile from the close callback.
                self._decided = asyncio.get_running_loop().create_future()
                self.client.set_close_callback(self._client_gone)
                await self._decided
            if self.closed:
                return

    # --- app -> client ------------------------------------------------------------

    async def _pump_responses(self, upstream: IOStream) -> None:
        client, tracker = self.client, self.tracker
        while True:
            try:
                data = await upstream.read_bytes(CHUNK, partial=True)
            except StreamClosedError:
                tracker.upstream_eof(monotonic())
                self.close("upstream")
                return
            self.last_upstream = now = monotonic()
            size = upstream.read_chunk_size
            if len(data) >= size or (len(data) << 2 < size and size > MIN_CHUNK):
                upstream.read_chunk_size = next_chunk_size(size, len(data))
            done = tracker.feed_response(data, now)
            try:
                await client.write(data)
            except StreamClosedError:
                self.close("client")
                return
            if done:
                tracker.sent(done, monotonic())
                self._emit()
            if tracker.released:  # bytes held behind an Upgrade, now cleared to go
                try:
                    await upstream.write(tracker.take_released())
                except StreamClosedError:
                    self.close("upstream")
                    return
            if self._decided is not None and not tracker.awaiting_upgrade:
                self._decided.set_result(None)
                self._decided = None
            if tracker.must_close:
                self.close("done")
                return
            if tracker.refused is not None:
                await self._try_refusal()
            elif self.server.draining and tracker.live == 0:
                self.close("done")
            if self.closed:
                return

    # --- answers of our own -----------------------------------------------------------

    async def _answer_unreachable(self) -> None:
        """The app could not be reached: 502 (or 504 on a connect timeout) to the first request."""
        ex = self.tracker.first_unanswered()
        if ex is None or self.closed:
            self.close("done")
            return
        status, error = (504, "upstream_timeout") if self.connect_error == "upstream_timeout" \
            else (502, "upstream_unavailable")
        what = "did not accept the connection in time" if status == 504 else "refused the connection"
        await self._answer(ex, status, REASONS[status], error,
                           f"mothership sidecar: the application {what}\n")

    async def _try_refusal(self) -> None:
        """Answer a refused request once the responses before it are out."""
        if self._refusing == 0:
            self._refusing = 1
            self.server.counters.bad_requests += 1
        if self._refusing == 2 or self.closed:
            return
        decision = self.tracker.refusal_ready()
        if decision == "wait":
            # Nothing more is read from the client, so learn of its leaving this way.
            self.client.set_close_callback(self._client_gone)
            return
        self._refusing = 2
        if decision == "close":  # the app already began answering it: just end
            self.close("done")
            return
        ex = self.tracker.refused
        assert ex is not None
        why = ex.reason
        await self._answer(ex, ex.status, why, "bad_request",
                           f"mothership sidecar: {REASONS.get(ex.status, 'Bad Request').lower()}: {why}\n")

    def _client_gone(self) -> None:
        self.close("client")

    async def _answer(self, ex: Exchange, status: int, reason: str, error: str, text: str) -> None:
        response = simple_response(status, REASONS[status], text)
        if self.upstream is not None:
            self.upstream.close()
        try:
            await self.client.write(response)
        except StreamClosedError:
            self.close("client")
            return
        self.tracker.conclude(ex, status, reason, error, len(response), monotonic())
        self._emit()
        self.close("done", linger=True)

    # --- bookkeeping ------------------------------------------------------------------

    def _emit(self) -> None:
        record = self.server.record
        for ex in self.tracker.take_finished():
            record(ex)

    def check_timeouts(self, now: float) -> None:
        config, tracker, timeouts = self.server.config, self.tracker, self.server.counters.timeouts
        if self.server.draining and tracker.live == 0:
            self.close("done")
            return
        head_started = tracker.head_started
        if head_started is not None:
            if now - head_started > config.header_timeout:  # slowloris: a head that never ends
                timeouts["header"] += 1
                self.close("timeout")
        elif tracker.live == 0 or tracker.tunnel:
            if now - max(self.last_client, self.last_upstream) > config.idle_timeout:
                timeouts["idle"] += 1
                self.close("done")
        elif tracker.reading_body and now - self.last_client > config.idle_timeout:
            timeouts["body"] += 1
            self.close("timeout")

    def close(self, cause: str, linger: bool = False) -> None:
        """End the connection; `cause` is "client", "upstream", "timeout", "done" or "error"."""
        if self.closed:
            return
        self.closed = True
        self.tracker.close(cause, monotonic())
        self._emit()
        if self._decided is not None and not self._decided.done():
            self._decided.set_result(None)
        if self.upstream is not None:
            self.upstream.close()
        if linger and not self.client.closed():
            self.server.lingering.add(self.client)
            self._spawn(self._linger())
        else:
            self.client.close()
        self.server.forget(self)

    async def _linger(self) -> None:
        """Half-close after an error response and drop what the client still sends, so its
        unread bytes do not make the kernel reset the connection before the response is read."""
        client = self.client
        try:
            if client.socket is not None:
                client.socket.shutdown(socket.SHUT_WR)
                deadline = IOLoop.current().time() + LINGER_SECONDS
                dropped = 0
                while dropped < LINGER_BYTES:
                    data = await gen.with_timeout(deadline, client.read_bytes(CHUNK, partial=True),
                                                  quiet_exceptions=(StreamClosedError,))
                    dropped += len(data)
        except (StreamClosedError, TimeoutError, OSError):
            pass
        finally:
            client.close()
            self.server.lingering.discard(client)
