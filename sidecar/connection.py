"""`ProxiedConnection`: one client connection, its connection to the app, and the two pumps that relay between them.

Bytes go both ways unchanged and streaming, one chunk at a time, and a write
is awaited (when the socket does not take it at once) before the next read,
so a slow reader slows the writer and memory stays bounded. The connection's
`ExchangeTracker` frames the bytes as they pass; each finished exchange goes
to the server's `record`.

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
from typing import TYPE_CHECKING, Any

from tornado import gen
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from sidecar.exchange import Exchange
from sidecar.http1.heads import simple_response
from sidecar.http1.tracker import ExchangeTracker
from sidecar.stream_io import CHUNK, MIN_CHUNK, next_chunk_size, write_through

if TYPE_CHECKING:
    from sidecar.proxy import SidecarServer

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0  # after an error response, how long to read and drop what the client still sends
LINGER_BYTES = 1 << 20
REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 504: "Gateway Timeout"}

monotonic = time.monotonic


class ProxiedConnection:
    """One client connection, its connection to the app, and the two pumps between them; `run()` until closed."""

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
