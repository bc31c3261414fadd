"""`ResponseSide`: the response half of an `ExchangeTracker`: frames the app's bytes into responses, leniently.

Responses are matched to requests in order; 1xx interim responses are
skipped; HEAD, 204 and 304 have no body; `101 Switching Protocols` (and a
CONNECT's 2xx) turn the connection into a tunnel, and any other answer to an
Upgrade or CONNECT lets the request bytes held behind it go on as HTTP. A
response the app frames badly is passed through until the app closes.
Pure: no I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sidecar.exchange import Exchange
from sidecar.http1.framing import CHUNKED, UNTIL_CLOSE, Refusal
from sidecar.http1.heads import (
    METHODS_FRAMING_RESPONSES,
    ResponseHead,
    find_head_end,
    parse_response_head,
    remember,
    response_memo,
)
from sidecar.http1.requests import RequestSide
from sidecar.http1.state import (
    R_HEAD,
    R_TUNNEL,
    R_WAIT,
    S_CHUNKED,
    S_DONE,
    S_HEAD,
    S_LENGTH,
    S_TUNNEL,
    S_UNTIL_CLOSE,
)

_NOTHING: Final[tuple[()]] = ()
_UNKNOWN: Final[Any] = object()


class ResponseSide(RequestSide):
    """`feed_response(data, now)` returns the exchanges whose response ended in `data`."""

    def feed_response(self, data: bytes, now: float) -> Sequence[Exchange]:
        """Take bytes from the app; return the exchanges whose response ends in them."""
        state = self._rs_state
        if state == S_TUNNEL:
            tunnel = self._rs_ex
            if tunnel is not None:
                tunnel.bytes_out += len(data)
            return _NOTHING
        if state == S_DONE:
            return _NOTHING
        if state == S_HEAD and self._rs_ex is None and self._unanswered and not self._rs_buf:
            # The commonest chunk: one whole response with a remembered head and a
            # Content-Length body, to a request that neither upgrades nor tunnels.
            after = data.find(b"\r\n\r\n") + 4
            parsed = response_memo.get(data[:after]) if after >= 4 else None
            if parsed is not None and parsed[2] >= 0 and after + parsed[2] == len(data) and parsed[0] >= 200:
                first = self._unanswered[0]
                if not first.upgrade and first.method not in METHODS_FRAMING_RESPONSES:
                    self._unanswered.popleft()
                    if first.t_first is None:
                        first.t_first = now
                    first.status, first.reason, _, keep = parsed
                    first.bytes_out += len(data)
                    first.response_done = True
                    if not (keep and first.keep_alive):
                        self._rs_keep = False
                        self.must_close = True
                        self._rs_state = S_DONE
                    return (first,)
        completed: list[Exchange] = []
        end = len(data)
        pos = 0
        while pos < end:
            ex = self._rs_ex
            if ex is None:
                ex = self._rs_ex = self._unanswered.popleft() if self._unanswered else _orphan(now)
                if ex.t_first is None:
                    ex.t_first = now
            if state == S_HEAD:
                pos = self._response_head(ex, data, pos)
                if pos < 0:
                    return completed
                state = self._rs_state
                if state == S_HEAD:
                    continue  # an interim response: the final one follows
            # The body, if any, in the same pass.
            if state == S_LENGTH:
                left = self._rs_left
                if end - pos < left:
                    self._rs_left = left - (end - pos)
                    ex.bytes_out += end - pos
                    return completed
                ex.bytes_out += left
                pos += left
            elif state == S_CHUNKED:
                start = pos
                try:
                    pos = self._rs_chunks.feed(data, pos)
                except Refusal:  # the app's own framing is broken: only the close ends it
                    self._rs_keep = False
                    self._rs_state = S_UNTIL_CLOSE
                    ex.bytes_out += end - start
                    return completed
                ex.bytes_out += pos - start
                if not self._rs_chunks.done:
                    return completed
            else:  # S_UNTIL_CLOSE or S_TUNNEL: everything from here on
                ex.bytes_out += end - pos
                if state == S_TUNNEL:  # (a tunnel's later chunks return at the top)
                    self.switched_at = pos
                return completed
            # The response in progress is complete.
            ex.response_done = True
            self._rs_ex = None
            if not ex.orphan:
                completed.append(ex)
            if not self._rs_keep:
                self.must_close = True
                self._rs_state = S_DONE
                break
            self._rs_state = state = S_HEAD
            if self._rq_state == R_WAIT and self._rq_ex is ex:
                self._upgrade_declined(now)
        return completed

    def _response_head(self, ex: Exchange, data: bytes, pos: int) -> int:
        """Read a response head from data[pos:]; return the position after it, or -1 if incomplete."""
        buf = self._rs_buf
        if buf:
            old = len(buf)
            buf += data
            after = find_head_end(buf, max(0, old - 3))
            if after < 0:
                ex.bytes_out += len(data)
                if len(buf) > 16 * self.max_head:
                    self._opaque_response(ex)
                return -1
            head = bytes(buf[:after])
            buf.clear()
            self._apply_response_head(ex, self._parse_response_head(head, ex.method))
            ex.bytes_out += after - old
            return after - old
        after = data.find(b"\r\n\r\n", pos) + 4
        if after >= 4:
            head = data[pos:after]
            # A remembered head ends at its first empty line, so it cannot hide a bare-LF one.
            parsed = response_memo.get(head, _UNKNOWN)
            if parsed is _UNKNOWN or ex.method in METHODS_FRAMING_RESPONSES:
                bare = data.find(b"\n\n", pos, after)
                if bare >= 0:
                    after = bare + 2
                    head = data[pos:after]
                parsed = self._parse_response_head(head, ex.method)
        else:
            after = find_head_end(data, pos)
            if after < 0:
                buf += data[pos:]
                ex.bytes_out += len(data) - pos
                return -1
            parsed = self._parse_response_head(data[pos:after], ex.method)
        ex.bytes_out += after - pos
        self._apply_response_head(ex, parsed)
        return after

    @staticmethod
    def _parse_response_head(head: bytes, method: bytes) -> ResponseHead | None:
        parsed = parse_response_head(head, method)
        if method not in METHODS_FRAMING_RESPONSES:  # the framing depends on them: not remembered
            remember(response_memo, head, parsed)
        return parsed

    def _apply_response_head(self, ex: Exchange, parsed: ResponseHead | None) -> None:
        """Act on a response head: status, framing, persistence."""
        if parsed is None:
            self._opaque_response(ex)
            return
        status, ex.reason, framing, keep = parsed
        if status < 200 and status != 101:
            return  # interim (100 Continue, 103 Early Hints): the final head follows
        ex.status = status
        self._rs_keep = keep and ex.keep_alive
        if framing > 0:
            self._rs_left = framing
            self._rs_state = S_LENGTH
        elif framing == 0:  # no body: complete at once
            self._rs_left = 0
            self._rs_state = S_LENGTH
        elif framing == CHUNKED:
            self._rs_chunks.reset()
            self._rs_state = S_CHUNKED
        elif framing == UNTIL_CLOSE:
            self._rs_keep = False
            self._rs_state = S_UNTIL_CLOSE
        else:
            self._start_tunnel(ex)

    def _opaque_response(self, ex: Exchange) -> None:
        """Not an HTTP response: pass it through until the app closes; the sample says so."""
        self._rs_buf.clear()
        ex.error = "upstream_reset"
        self._rs_keep = False
        self._rs_state = S_UNTIL_CLOSE

    def _start_tunnel(self, ex: Exchange) -> None:
        ex.tunnel = True
        self._rs_state = S_TUNNEL
        self._rq_state = R_TUNNEL
        self._rq_ex = ex
        self._rq_buf.clear()
        if self._rq_held:  # what the client sent early belongs to the new protocol
            ex.bytes_in += len(self._rq_held)
            self.released += self._rq_held
            self._rq_held.clear()
        # Requests pipelined behind the one that switched protocols are now tunnel bytes.
        for other in self._unanswered:
            self._drop(other)
        self._unanswered.clear()

    def _upgrade_declined(self, now: float) -> None:
        """The app answered an Upgrade or CONNECT without switching: HTTP goes on, held bytes included."""
        self._rq_ex = None
        self._rq_state = R_HEAD
        if self._rq_held:
            held = bytes(self._rq_held)
            self._rq_held.clear()
            self.released += self.feed_request(held, now)


def _orphan(now: float) -> Exchange:
    """Stands in for the request of a response nobody asked for (it is forwarded, never reported)."""
    ex = Exchange(now)
    ex.orphan = True
    ex.method = b"GET"
    return ex

