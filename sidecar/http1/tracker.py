"""HTTP/1.x framing of one proxied connection, both directions, without changing a byte.

`ExchangeTracker` follows the request stream (client -> app) and the response
stream (app -> client) of one connection as two small state machines and pairs
them into `Exchange` records: pipelined requests are answered in order, 1xx
interim responses are skipped, `101 Switching Protocols` (and CONNECT) turn the
connection into a tunnel. Body bytes are skipped by counting, never copied or
searched. Requests that cannot be framed safely are refused (request smuggling,
RFC 9112 sections 6.3 and 11.2). Each direction is a mixin of its own
(`sidecar.http1.requests`, `sidecar.http1.responses`) over the state they
share (`sidecar.http1.state`); this module joins them and answers the proxy's
questions. The rules they apply live in `sidecar.http1.framing`, `sidecar.http1.heads` and
`sidecar.http1.chunked`. Pure: no I/O and no clock; callers pass `now`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.exchange import Exchange
from sidecar.http1.responses import ResponseSide
from sidecar.http1.state import R_CHUNKED, R_HEAD, R_LENGTH, R_REFUSED, R_WAIT, S_DONE, S_TUNNEL, S_UNTIL_CLOSE


class ExchangeTracker(ResponseSide):
    """Frames both directions of one connection into `Exchange`s.

    `feed_request(data, now)` returns the bytes that may go to the app now
    (request heads are held until complete and checked); after it, `refused`
    may name a request to answer with an error. `feed_response(data, now)`
    returns the exchanges whose response ended in `data`; once those bytes
    are written, `sent(exchanges, now)` stamps them. Exchanges that are over
    (both sides done, or the connection closed) collect in `finished`.
    While `awaiting_upgrade`, request bytes are held; the response that
    settles it leaves them in `released` (to forward, via `take_released`).
    """

    # --- what the proxy asks ------------------------------------------------

    @property
    def live(self) -> int:
        """Exchanges begun and not yet finished."""
        return len(self._live)

    @property
    def head_started(self) -> float | None:
        """When the request head now being read began, if one is incomplete."""
        ex = self._rq_ex
        return ex.t_start if self._rq_state == R_HEAD and ex is not None else None

    @property
    def reading_body(self) -> bool:
        return self._rq_state == R_LENGTH or self._rq_state == R_CHUNKED

    @property
    def tunnel(self) -> bool:
        return self._rs_state == S_TUNNEL

    def take_finished(self) -> list[Exchange]:
        done, self.finished = self.finished, []
        return done

    def first_unanswered(self) -> Exchange | None:
        """The oldest request whose head was forwarded and whose response has not begun."""
        return self._unanswered[0] if self._unanswered else None

    def refusal_ready(self) -> str:
        """For `refused`: "wait" for earlier responses, "send" the error now, or just "close"."""
        ex = self.refused
        assert ex is not None
        for other in self._live:
            if other is ex:
                break
            if not other.response_done:
                return "wait"
        return "close" if ex.t_first is not None else "send"

    @property
    def awaiting_upgrade(self) -> bool:
        """The request side holds what comes until the app answers an Upgrade or CONNECT."""
        return self._rq_state == R_WAIT

    def take_released(self) -> bytes:
        released = bytes(self.released)
        self.released.clear()
        return released

    def switched(self) -> tuple[Exchange, int] | None:
        """After a response chunk in which the app switched protocols (101, or a CONNECT's 2xx): the
        exchange that asked, and where in that chunk the other protocol's bytes begin."""
        at, self.switched_at = self.switched_at, -1
        ex = self._rs_ex
        if at < 0 or ex is None or self._rs_state != S_TUNNEL:
            return None
        return ex, at

    def hand_over(self, ex: Exchange, tunnel_bytes: int) -> bytes:
        """Another protocol's tracker follows the connection from the switch on, `ex` included: this one
        lets it go, with the `tunnel_bytes` of the app's it counted. Returns the client's bytes held behind
        the request (to forward, and for the new tracker to read first)."""
        self._drop(ex)
        released = self.take_released()
        ex.bytes_out -= tunnel_bytes
        ex.bytes_in -= len(released)
        ex.tunnel = False
        self._rs_ex = self._rq_ex = None
        self._rs_state = S_DONE
        self._rq_state = R_REFUSED
        return released

    # --- ends -------------------------------------------------------------------

    def sent(self, exchanges: Iterable[Exchange], now: float) -> None:
        """The bytes that ended these responses have been written to the client."""
        for ex in exchanges:
            ex.t_end = now
            if ex.request_done:
                self._finish(ex)

    def conclude(self, ex: Exchange, status: int, reason: str, error: str, bytes_out: int, now: float) -> None:
        """The proxy answered `ex` itself (400, 431, 502, 504): it is over."""
        ex.status = status
        ex.reason = reason
        ex.error = error
        ex.bytes_out += bytes_out
        if ex.t_first is None:
            ex.t_first = now
        ex.t_end = now
        if ex in self._unanswered:
            self._unanswered.remove(ex)
        self._finish(ex)

    def upstream_eof(self, now: float) -> None:
        """The app closed its side: that ends a close-delimited response."""
        ex = self._rs_ex
        if self._rs_state == S_UNTIL_CLOSE and ex is not None:
            self._rs_ex = None
            self._rs_state = S_DONE
            ex.response_done = True
            if not ex.orphan:
                ex.t_end = now
                if ex.request_done:
                    self._finish(ex)

    def close(self, cause: str, now: float) -> None:
        """The connection is over; `cause` is "client", "upstream", "timeout" or "done".

        Exchanges cut short get an error word; requests never answered by an
        app that closed as it said it would ("done"), and heads never
        completed, are dropped (a client retries those).
        """
        for ex in list(self._live):
            if ex.t_end is not None or ex.tunnel:
                if ex.t_end is None:
                    ex.t_end = now
            elif ex.refused:
                ex.status = 0  # the error response never went out
                ex.t_end = now
            elif not ex.head_done or (cause == "done" and ex.t_first is None):
                self._drop(ex)
                continue
            else:
                if ex.error is None:
                    ex.error = "client_closed" if cause in ("client", "timeout") else "upstream_reset"
                ex.t_end = now
            self._finish(ex)
        self._unanswered.clear()
        self._rq_state = R_REFUSED
        self._rs_state = S_DONE
