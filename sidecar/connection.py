"""`ProxiedConnection`: one client connection, its connection to the app, and the two pumps that relay between them.

Bytes go both ways unchanged and streaming, one chunk at a time, and a write
is awaited (when the socket does not take it at once) before the next read,
so a slow reader slows the writer and memory stays bounded. The client's
first bytes decide the protocol (`sidecar.detect`; `--protocol` can force
it): HTTP/1 is framed by the connection's `ExchangeTracker`, which may hold
or refuse bytes; HTTP/2, TLS and anything else are relayed as they come and
a copy of each chunk goes to an observer (`H2Tracker`, `OpaqueTracker`)
after it is written. Each finished exchange goes to the server's `record`.

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
  connection with nothing in flight (or a tunnel, or an opaque one) that is
  silent both ways, and a request body that stalls. Waiting on the app has
  no time limit.
- Detection waits for nothing HTTP/1 sends: a request line decides on the
  first read. A client that sends nothing is relayed as opaque as soon as
  the app speaks (a server-speaks-first protocol), or after detect_timeout.
- A `101` to `Upgrade: h2c` hands the connection to an `H2Tracker` with the
  upgrade request as stream 1 (RFC 7540 3.2).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from tornado import gen
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from sidecar import detect
from sidecar.exchange import Exchange
from sidecar.first_bytes import DETECT, HTTP1, FirstBytes
from sidecar.http1.heads import simple_response
from sidecar.http1.tracker import ExchangeTracker
from sidecar.opaque import OpaqueTracker
from sidecar.passthrough import PassThrough
from sidecar.stream_io import CHUNK, MIN_CHUNK, next_chunk_size, write_through

if TYPE_CHECKING:
    from sidecar.proxy import SidecarServer

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0  # after an error response, how long to read and drop what the client still sends
LINGER_BYTES = 1 << 20
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 504: "Gateway Timeout"}

monotonic = time.monotonic


class ProxiedConnection(FirstBytes, PassThrough):
    """One client connection, its connection to the app, and the two pumps between them; `run()` until closed."""

    __slots__ = ()

    def __init__(self, server: SidecarServer, client: IOStream) -> None:
        self.server = server
        self.client = client
        self.upstream = None
        self.tracker = ExchangeTracker(server.config.max_header_bytes, allow_connect=server.config.allow_connect)
        self.observer = None
        self.mode = DETECT
        self.closed = False
        self.connect_error = "upstream_unavailable"
        self.opened = self.last_client = self.last_upstream = monotonic()
        self._held = b""
        self._wake = None
        self._untracked = False
        self._refusing = 0
        self._failed_at = 0.0
        self._retried = False
        self._decided = None
        self._connected = asyncio.get_running_loop().create_future()
        self._tasks = set()

    @property
    def live(self) -> int:
        """Exchanges begun and not yet finished."""
        observer = self.observer
        return self.tracker.live if observer is None else observer.live

    @property
    def idle(self) -> bool:
        return self.live == 0

    async def run(self) -> None:
        try:
            self.client.set_nodelay(True)
            self._spawn(self._connect_and_relay())
            forced = self.server.config.protocol
            if forced == "auto":
                await self._detect()
            elif forced == "http1":
                self._decide(HTTP1, detect.HTTP1)
                await self._pump_requests(b"")
            else:
                self._observe(detect.H2 if forced == "http2" else detect.TCP, "forced")
                await self._relay_client(b"", None)
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
            await self._pump_from_app(upstream)
        except Exception:
            log.error("connection to the app failed", exc_info=True)
            self.close("error")

    async def _app(self, now: float) -> IOStream | None:
        """The connection to the app, once it is made; tried once more if it had failed before `now`."""
        while True:
            connecting = self._connected
            upstream = await connecting
            if upstream is not None or self.closed:
                return upstream
            if connecting is not self._connected:
                continue  # the other pump is trying again
            if self._retried or self._failed_at >= now:
                return None
            # The app was down when the client connected; it may be up by now.
            self._retried = True
            self._connected = asyncio.get_running_loop().create_future()
            self._spawn(self._connect_and_relay())

    # --- client -> app ------------------------------------------------------------

    async def _pump_requests(self, data: bytes) -> None:
        """HTTP/1: the tracker frames the client's bytes and says which may go to the app now."""
        client, tracker = self.client, self.tracker
        while True:
            if self.observer is not None:  # the app switched to HTTP/2 (h2c) while this read was pending
                await self._relay_client(data, None)
                return
            if data:
                now = self.last_client
                out = tracker.feed_request(data, now)
                if out:
                    upstream = self.upstream
                    if upstream is None:
                        upstream = await self._app(now)
                        if upstream is None:
                            await self._answer_unreachable()
                            return
                    try:
                        pending = write_through(upstream, out)
                        if pending is not None:
                            await pending
                    except StreamClosedError:
                        self.close("upstream")
                        return
                size = client.read_chunk_size
                if len(data) >= size or (len(data) << 2 < size and size > MIN_CHUNK):
                    client.read_chunk_size = next_chunk_size(size, len(data))
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
                    if self.observer is not None and not self.closed:
                        self.client.set_close_callback(None)
                        await self._relay_client(b"", None)
                        return
                if self.closed:
                    return
            try:
                data = await client.read_bytes(CHUNK, partial=True)
            except StreamClosedError:
                self.close("client")
                return
            self.last_client = monotonic()

    # --- app -> client ------------------------------------------------------------

    async def _pump_from_app(self, upstream: IOStream) -> None:
        data = b""
        if self.mode == DETECT:
            try:
                data = await upstream.read_bytes(CHUNK, partial=True)
            except StreamClosedError as exc:  # chosen meanwhile or not, the app's side ended
                if self.mode == HTTP1:
                    self.tracker.upstream_eof(monotonic())
                self._app_closed(exc)
                return
            self.last_upstream = monotonic()
            if self.mode == DETECT:  # the app speaks first: an HTTP/2 server's SETTINGS, or not HTTP at all
                protocol = detect.detect_server(data)
                self._observe(protocol, "server_first" if protocol == detect.TCP else protocol)
                self._wake_up()
        if self.mode == HTTP1:
            await self._pump_responses(upstream, data)
        else:
            await self._relay_server(upstream, data)

    async def _pump_responses(self, upstream: IOStream, data: bytes) -> None:
        """HTTP/1: response bytes go out as they are, then the tracker reads them."""
        client, tracker = self.client, self.tracker
        while True:
            if data:
                now = self.last_upstream
                # Response bytes go out as they are, so they go before the tracker
                # reads them: its work is off the path of the client's wait.
                try:
                    pending = write_through(client, data)
                    if pending is not None:
                        await pending
                except StreamClosedError:
                    tracker.feed_response(data, now)  # what the app sent still counts in the sample
                    self.close("client")
                    return
                done = tracker.feed_response(data, now)
                size = upstream.read_chunk_size
                if len(data) >= size or (len(data) << 2 < size and size > MIN_CHUNK):
                    upstream.read_chunk_size = next_chunk_size(size, len(data))
                if done:
                    tracker.sent(done, monotonic())
                    self._emit()
                if tracker.switched_at >= 0 and await self._switched(upstream, data, now):
                    await self._relay_server(upstream, b"")
                    return
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
            try:
                data = await upstream.read_bytes(CHUNK, partial=True)
            except StreamClosedError:
                tracker.upstream_eof(monotonic())
                self.close("upstream")
                return
            self.last_upstream = monotonic()

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
        if self.server.draining and self.live == 0:
            self.close("done")
            return
        observer = self.observer
        if observer is not None:
            # Streams waiting on the app have no time limit, as HTTP/1 requests; an opaque
            # connection is a tunnel, closed when silent both ways.
            if (observer.live == 0 or isinstance(observer, OpaqueTracker)) \
                    and now - max(self.last_client, self.last_upstream) > config.idle_timeout:
                timeouts["idle"] += 1
                self.close("done")
            return
        if self._held and now - self.opened > config.header_timeout:  # a method that never ends
            timeouts["header"] += 1
            self.close("timeout")
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
        now = monotonic()
        self.tracker.close(cause, now)
        self._emit()
        observer = self.observer
        if observer is not None:
            if cause == "client" and self.upstream is not None and not self._untracked:
                self._read_out_app(observer, now)
            observer.close(cause, now)
            self._observed(observer)
        self._wake_up()
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

