"""`ProxiedConnection`: one client connection, its connection to the app, and the relay between them.

The relay runs on the two transports' callbacks (`sidecar.sides.Side`):
each chunk read from one side is written to the other at once, unchanged,
and then shown to what follows the protocol; a side whose write buffer
fills stops the other side's reading until it drains, so a slow reader
slows the writer and memory stays bounded. The client's first bytes decide
the protocol (`sidecar.detect`; `--protocol` can force it): HTTP/1 is
framed by the connection's `ExchangeTracker`, which may hold or refuse
bytes; HTTP/2, TLS and anything else are relayed as they come and a copy
of each chunk goes to an observer (`H2Tracker`, `OpaqueTracker`) after it
is written. Each finished exchange goes to the server's `record`.

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
  Bytes sent behind an Upgrade or CONNECT request are held (up to a bound,
  past which the client is not read) until the app answers: a switch makes
  them tunnel bytes, anything else frames and checks them as HTTP.
- header_timeout runs from a head's first byte; idle_timeout closes a
  connection with nothing in flight (or a tunnel, or an opaque one) that is
  silent both ways, and a request body that stalls. Waiting on the app has
  no time limit.
- Detection waits for nothing HTTP/1 sends: a request line decides on the
  first read. A client that sends nothing is relayed as opaque as soon as
  the app speaks (a server-speaks-first protocol), or after detect_timeout.
- A `101` to `Upgrade: h2c` hands the connection to an `H2Tracker` with the
  upgrade request as stream 1 (RFC 7540 3.2).
- An end of file from one side is passed on to the other (half-close)
  while anything can still come back: for HTTP/1 an exchange in flight
  after the client's (the connection ends once it is answered); relayed as
  it is, either side's, until the other side ends too. The app ending an
  HTTP/1 connection, or either side resetting, ends it; what was written
  toward the other end still goes out before it is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from sidecar import detect
from sidecar.app_link import AppLink
from sidecar.exchange import Exchange
from sidecar.first_bytes import DETECT, HTTP1
from sidecar.http1.heads import simple_response
from sidecar.http1.tracker import ExchangeTracker
from sidecar.opaque import OpaqueTracker
from sidecar.passthrough import OBSERVED
from sidecar.sides import CHUNK, CONNECTING, WAITING, Side

if TYPE_CHECKING:
    from sidecar.proxy import SidecarServer

log = logging.getLogger(__name__)

LINGER: Final = 3  # mode: an error response went out; what the client still sends is read and dropped
CLIENT_ENDED: Final = 1  # which side shut its sending side first (half-close)
APP_ENDED: Final = 2
LINGER_SECONDS: Final = 2.0  # after an error response, how long to read and drop what the client still sends
LINGER_BYTES: Final = 1 << 20
# Bytes read from a client while the relay holds them (behind an Upgrade, after a refusal) before it
# stops reading that client: what Tornado's IOStream buffered at most.
WAIT_LIMIT: Final = 4 * CHUNK
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 504: "Gateway Timeout"}

monotonic: Final = time.monotonic  # a static, not a lookup in the module's namespace, once compiled


class ProxiedConnection(AppLink):
    """One client connection, its connection to the app, and the relay between them. `client` is the
    protocol to hand the listening server; the rest follows from its transport's callbacks."""

    __slots__ = ()

    def __init__(self, server: SidecarServer) -> None:
        self.server = server
        self.client = Side(self._client_made, self._client_detect, self._client_eof, self._client_lost, self._failed)
        self.upstream = None
        self.tracker = ExchangeTracker(server.config.max_header_bytes, allow_connect=server.config.allow_connect)
        self.observer = None
        self.mode = DETECT
        self.closed = False
        self.connect_error = "upstream_unavailable"
        self.opened = self.last_client = self.last_upstream = monotonic()
        self._held = b""
        self._detect_timer = None
        self._untracked = False
        self._refusing = 0
        self._connecting = None
        self._failed_at = 0.0
        self._retried = False
        self._pending = None
        self._waiting = 0
        self._linger_timer = None
        self._lingered = 0
        self._ended = 0

    @property
    def live(self) -> int:
        """Exchanges begun and not yet finished."""
        observer = self.observer
        return self.tracker.live if observer is None else observer.live

    @property
    def idle(self) -> bool:
        return self.live == 0

    def _client_made(self, side: Side) -> None:
        self.server.opened(self)
        self._dial()
        forced = self.server.config.protocol
        if forced == "auto":
            self._detect_timer = asyncio.get_running_loop().call_later(self.server.config.detect_timeout,
                                                                       self._silent)
        elif forced == "http1":
            self._decide(HTTP1, detect.HTTP1)
        else:
            self._observe(detect.H2 if forced == "http2" else detect.TCP, "forced")
            self._want_app(b"", self.last_client)

    def _failed(self) -> None:
        """What a handler raised: logged, and the connection closed (nothing else is touched)."""
        log.error("connection from client failed", exc_info=True)
        self.close("error")

    def _handlers(self) -> tuple[Callable[[bytes], None], Callable[[bytes], None]]:
        """What reads the client's and the app's bytes in the current mode."""
        mode = self.mode
        if mode == HTTP1:
            return self._client_http1, self._app_http1
        if mode == OBSERVED:
            return self._client_observed, self._app_observed
        return self._client_detect, self._app_detect

    # --- client -> app ------------------------------------------------------------

    def _client_http1(self, data: bytes) -> None:
        """HTTP/1: the tracker frames the client's bytes and says which may go to the app now."""
        now = self.last_client = monotonic()
        tracker = self.tracker
        out = tracker.feed_request(data, now)
        if out:
            upstream = self.upstream
            if upstream is not None:
                upstream.transport.write(out)
            else:
                self._want_app(out, now)
                if self.closed:
                    return
        if tracker.finished:
            self._emit()
        if tracker.refused is not None or tracker.awaiting_upgrade:
            # Nothing more goes to the app for now; bytes still read let the client's leaving be seen.
            self._waiting += len(data)
            if self._waiting > WAIT_LIMIT:
                self.client.hold(WAITING)
            if tracker.refused is not None:
                self._try_refusal()

    def _client_eof(self) -> None:
        """The client shut its sending side: passed on to the app, whose answers still reach the client
        (half-close), when anything can still come back; else the connection ends."""
        mode, tracker, upstream = self.mode, self.tracker, self.upstream
        if mode == LINGER:
            self.end_linger(flush=True)
        elif upstream is None or self._ended or mode == DETECT or (mode == HTTP1 and (
                tracker.live == 0 or tracker.head_started is not None or tracker.awaiting_upgrade
                or tracker.refused is not None)):
            self.close("client")
        else:
            self._ended |= CLIENT_ENDED
            if upstream.transport.can_write_eof():
                upstream.transport.write_eof()

    def _client_lost(self, exc: Exception | None) -> None:
        self.server.flushing.pop(self.client, None)
        if self.mode == LINGER:
            self.end_linger(flush=False)
        else:
            self.close("client")

    # --- app -> client ------------------------------------------------------------

    def _app_http1(self, data: bytes) -> None:
        """HTTP/1: response bytes go out as they are, then the tracker reads them: its work is off the path
        of the client's wait."""
        now = self.last_upstream = monotonic()
        self.client.transport.write(data)
        tracker = self.tracker
        done = tracker.feed_response(data, now)
        if done:
            tracker.sent(done, monotonic())
            self._emit()
        if tracker.switched_at >= 0 and self._switched(data, now):
            return
        if tracker.released:  # bytes held behind an Upgrade, now cleared to go
            self.upstream.transport.write(tracker.take_released())  # type: ignore[union-attr]
        if self._waiting and not tracker.awaiting_upgrade and tracker.refused is None:
            self._waiting = 0
            self.client.release(WAITING)
        if tracker.must_close or (self._ended and tracker.live == 0):
            self.close("done")
        elif tracker.refused is not None:
            self._try_refusal()
        elif self.server.draining and tracker.live == 0:
            self.close("done")

    def _app_eof(self) -> None:
        """The app shut its sending side. Relaying as it is, that is passed on to the client, which may
        still send (half-close); for HTTP/1 it ends the connection (and a close-delimited response)."""
        if self.mode == OBSERVED and not self._ended and not self.closed:
            self._ended = APP_ENDED
            if self.client.transport.can_write_eof():
                self.client.transport.write_eof()
            return
        self._app_lost(None)

    def _app_lost(self, exc: Exception | None) -> None:
        """The app's side ended (an opaque connection it reset says so); so does the connection."""
        if self.closed:
            return
        now = monotonic()
        if self.mode == HTTP1:
            self.tracker.upstream_eof(now)
        observer = self.observer
        if isinstance(exc, ConnectionResetError) and isinstance(observer, OpaqueTracker):
            observer.fail("upstream_reset", now)
        # An app that ends after the client's end of file was left by the client (which may have closed
        # its socket altogether: TCP does not say); what it had not answered counts as the client's doing.
        self.close("client" if self._ended == CLIENT_ENDED else "upstream")

    # --- answers of our own -----------------------------------------------------------

    def _unreachable(self) -> None:
        """The app could not be reached for what waits on it."""
        if self.mode == OBSERVED:
            self._unreachable_observed()
        else:
            self._answer_unreachable()

    def _answer_unreachable(self) -> None:
        """HTTP/1: 502 (or 504 on a connect timeout) to the first request."""
        self._pending = None
        ex = self.tracker.first_unanswered()
        if ex is None or self.closed:
            self.close("done")
            return
        status, error = (504, "upstream_timeout") if self.connect_error == "upstream_timeout" \
            else (502, "upstream_unavailable")
        what = "did not accept the connection in time" if status == 504 else "refused the connection"
        self._answer(ex, status, REASONS[status], error, f"mothership sidecar: the application {what}\n")

    def _try_refusal(self) -> None:
        """Answer a refused request once the responses before it are out."""
        if self._refusing == 0:
            self._refusing = 1
            self.server.counters.bad_requests += 1
        if self._refusing == 2 or self.closed:
            return
        decision = self.tracker.refusal_ready()
        if decision == "wait":
            return
        self._refusing = 2
        if decision == "close":  # the app already began answering it: just end
            self.close("done")
            return
        ex = self.tracker.refused
        assert ex is not None
        why = ex.reason
        self._answer(ex, ex.status, why, "bad_request",
                     f"mothership sidecar: {REASONS.get(ex.status, 'Bad Request').lower()}: {why}\n")

    def _answer(self, ex: Exchange, status: int, reason: str, error: str, text: str) -> None:
        response = simple_response(status, REASONS[status], text)
        if self.upstream is not None:
            self.upstream.shut(False)
        self.client.transport.write(response)
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
        if self._detect_timer is not None:
            self._detect_timer.cancel()
            self._detect_timer = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self.upstream is not None:
            self.upstream.shut(flush=cause == "done")
        client = self.client
        if linger and not client.transport.is_closing():
            self._linger()
        else:
            # What the app sent before it ended still reaches the client.
            self.server.shut(client, flush=cause == "upstream" or cause == "done")
        self.server.forget(self)

    def _linger(self) -> None:
        """Half-close after an error response and drop what the client still sends, so its unread bytes do
        not make the kernel reset the connection before the response is read."""
        self.mode = LINGER
        client = self.client
        client.on_data = self._linger_data
        client.release(WAITING | CONNECTING)
        if client.transport.can_write_eof():
            client.transport.write_eof()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.end_linger)
        self.server.lingering.add(self)

    def _linger_data(self, data: bytes) -> None:
        self._lingered += len(data)
        if self._lingered >= LINGER_BYTES:
            self.end_linger()

    def end_linger(self, flush: bool = True) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self in self.server.lingering:
            self.server.lingering.discard(self)
            self.server.shut(self.client, flush=flush)
