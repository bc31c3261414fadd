"""HTTP/1.x framing of one proxied connection, both directions, without changing a byte.

`ExchangeTracker` follows the request stream (client -> app) and the response
stream (app -> client) of one connection as two small state machines and pairs
them into `Exchange` records: pipelined requests are answered in order, 1xx
interim responses are skipped, `101 Switching Protocols` (and CONNECT) turn the
connection into a tunnel. Body bytes are skipped by counting, never copied or
searched. Requests that cannot be framed safely are refused (request smuggling,
RFC 9112 sections 6.3 and 11.2). The rules it applies live in
`sidecar.framing`, `sidecar.heads` and `sidecar.chunked`. Pure: no I/O and no
clock; callers pass `now`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sidecar.chunked import ChunkedBody
from sidecar.framing import CHUNKED, UNTIL_CLOSE, Refusal
from sidecar.heads import (
    MAX_METHOD,
    MEMO_HEAD_BYTES,
    METHOD,
    METHODS_FRAMING_RESPONSES,
    REQUEST_LINE,
    ResponseHead,
    find_head_end,
    parse_request_head,
    parse_response_head,
    remember,
    request_line_guess,
    request_memo,
    response_memo,
)

_NOTHING: Final[tuple[()]] = ()
_UNKNOWN: Final[Any] = object()


class Exchange:
    """One request and its response, as far as they have been seen.

    Times are the caller's monotonic seconds: `t_start` when the request's
    first byte came in, `t_first` when the response's first byte came in
    (1xx interim responses included), `t_end` when its last byte went out.
    """

    # Class-level defaults: a new exchange sets only its start time (this is
    # made once per request, on the hot path); the rest is set as it is seen.
    t_first: float | None = None
    t_end: float | None = None
    method = b""
    target = b""
    version = 1  # minor version: HTTP/1.0 or HTTP/1.1
    user_agent = b""
    keep_alive = True
    upgrade = False  # asked for Upgrade (with Connection: upgrade)
    status = 0
    reason = ""  # the reason phrase, or why the proxy refused the request
    bytes_in = 0
    bytes_out = 0
    error: str | None = None
    head_done = False
    request_done = False
    response_done = False
    tunnel = False
    refused = False
    orphan = False  # a response nobody asked for: forwarded, never reported

    def __init__(self, t_start: float) -> None:
        self.t_start = t_start

    def __repr__(self) -> str:
        return (f"<Exchange {self.method.decode('latin-1')} {self.target[:80]!r} -> {self.status}"
                f" in={self.bytes_in} out={self.bytes_out} error={self.error}>")


# --- the tracker ------------------------------------------------------------------

# Request side states.
_R_HEAD = 0  # between requests or inside a head (held in _rq_buf)
_R_LENGTH = 1  # a Content-Length body; _rq_left bytes to go
_R_CHUNKED = 2
_R_WAIT = 3  # Upgrade/CONNECT asked: bytes are held until the response decides what they are
_R_TUNNEL = 4
_R_DISCARD = 5  # after a request that closes the connection: nothing more goes on
_R_REFUSED = 6

# Response side states.
_S_HEAD = 0
_S_LENGTH = 1
_S_CHUNKED = 2
_S_UNTIL_CLOSE = 3
_S_TUNNEL = 4
_S_DONE = 5  # the connection closes after this response


class ExchangeTracker:
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

    def __init__(self, max_head: int = 65536) -> None:
        self.max_head = max_head
        self._memo_limit = min(max_head, MEMO_HEAD_BYTES)
        self.finished: list[Exchange] = []
        self.refused: Exchange | None = None
        self.must_close = False  # the response side ended the connection
        self._live: deque[Exchange] = deque()  # every unfinished exchange, in request order
        self._unanswered: deque[Exchange] = deque()  # heads forwarded, response not begun
        self._rq_state = _R_HEAD
        self._rq_ex: Exchange | None = None
        self._rq_buf = bytearray()
        self._rq_line_ok = False
        self._rq_left = 0
        self._rq_held = bytearray()  # what came behind an Upgrade/CONNECT request, held in _R_WAIT
        self.released = bytearray()  # held request bytes the response side cleared to go to the app
        self._rq_chunks = ChunkedBody(strict=True, max_trailer=max_head)
        self._rs_state = _S_HEAD
        self._rs_ex: Exchange | None = None
        self._rs_buf = bytearray()
        self._rs_left = 0
        self._rs_keep = True
        self._rs_chunks = ChunkedBody(strict=False, max_trailer=max_head)

    # --- what the proxy asks ------------------------------------------------

    @property
    def live(self) -> int:
        """Exchanges begun and not yet finished."""
        return len(self._live)

    @property
    def head_started(self) -> float | None:
        """When the request head now being read began, if one is incomplete."""
        ex = self._rq_ex
        return ex.t_start if self._rq_state == _R_HEAD and ex is not None else None

    @property
    def reading_body(self) -> bool:
        return self._rq_state == _R_LENGTH or self._rq_state == _R_CHUNKED

    @property
    def tunnel(self) -> bool:
        return self._rs_state == _S_TUNNEL

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

    # --- request side ---------------------------------------------------------

    def feed_request(self, data: bytes, now: float) -> bytes:
        """Take bytes from the client; return those that may be forwarded now."""
        state = self._rq_state
        if state == _R_HEAD and len(data) <= self._memo_limit and not self._rq_buf:
            # The commonest chunk: exactly one bodiless request head seen before.
            parsed = request_memo.get(data)
            if parsed is not None and parsed[6] == 0 and data[0] != 13:
                self._rq_ex = fresh = Exchange(now)
                fresh.method, fresh.target, fresh.version, fresh.keep_alive, fresh.upgrade, fresh.user_agent, _ = parsed
                fresh.bytes_in = len(data)
                fresh.head_done = True
                self._live.append(fresh)
                self._unanswered.append(fresh)
                self._request_done(fresh)
                return data
        if state >= _R_WAIT:
            if state == _R_TUNNEL:
                ex = self._rq_ex
                if ex is not None:
                    ex.bytes_in += len(data)
                return data
            if state == _R_WAIT:
                self._rq_held += data
            return b""
        end = len(data)
        pos = 0
        stop = end  # bytes from here on are held or dropped
        released = b""  # held head bytes now cleared to go first
        try:
            while pos < end:
                if state == _R_HEAD:
                    if self._rq_buf:
                        released, pos = self._continue_head(data, now)
                        if pos < 0:
                            return b""
                    elif data[pos] == 13 and data.startswith(b"\r\n", pos):
                        pos += 2  # an empty line before a request-line is ignored (RFC 9112 2.2)
                        continue
                    else:
                        i = data.find(b"\r\n\r\n", pos) + 4
                        if i < 4 or i - pos > self.max_head:
                            stop = pos
                            self._hold_head(data, pos, now)
                            break
                        self._rq_ex = ex = Exchange(now)
                        self._live.append(ex)
                        self._begin_request(ex, data if pos == 0 and i == end else data[pos:i])
                        pos = i
                elif state == _R_LENGTH:
                    ex = self._rq_ex
                    assert ex is not None
                    left = self._rq_left
                    if end - pos < left:
                        self._rq_left = left - (end - pos)
                        ex.bytes_in += end - pos
                        pos = end
                        break
                    ex.bytes_in += left
                    pos += left
                    self._request_done(ex)
                elif state == _R_CHUNKED:
                    ex = self._rq_ex
                    assert ex is not None
                    start = pos
                    stop = pos  # a bad chunk line must not reach the app
                    pos = self._rq_chunks.feed(data, pos)
                    stop = end
                    ex.bytes_in += pos - start
                    if self._rq_chunks.done:
                        self._request_done(ex)
                elif state == _R_DISCARD:
                    stop = pos
                    break
                elif state == _R_WAIT:
                    # Until the app answers the Upgrade (or CONNECT), what follows may be
                    # another protocol or more requests: held, neither forwarded nor framed.
                    self._rq_held += data[pos:]
                    stop = pos
                    break
                else:  # _R_TUNNEL: the rest is not HTTP
                    ex = self._rq_ex
                    if ex is not None:
                        ex.bytes_in += end - pos
                    break
                state = self._rq_state
        except Refusal as refusal:
            self._refuse(refusal, now)
            if state == _R_HEAD:
                stop = pos
        if released:
            return released + data[:stop]
        return data if stop == end else data[:stop]

    def _hold_head(self, data: bytes, pos: int, now: float) -> None:
        """Keep an incomplete head back; refuse it as soon as it cannot be a request."""
        ex = Exchange(now)
        self._live.append(ex)
        self._rq_ex = ex
        self._rq_buf += data[pos:]
        self._rq_line_ok = False
        self._check_partial_head(0)

    def _continue_head(self, data: bytes, now: float) -> tuple[bytes, int]:
        """More of a held head: (bytes released, position after the head in data) or pos -1."""
        buf = self._rq_buf
        old = len(buf)
        buf += data
        i = buf.find(b"\r\n\r\n", max(0, old - 3))
        if i < 0 or i + 4 > self.max_head:
            self._check_partial_head(old)
            return b"", -1
        head = bytes(buf[:i + 4])
        released = bytes(buf[:old])
        buf.clear()
        ex = self._rq_ex
        assert ex is not None
        if len(head) > self.max_head:
            raise Refusal(431, "request head too large")
        ex.bytes_in -= len(head) - len(head.lstrip(b"\r\n"))  # empty lines before it belong to no request
        self._begin_request(ex, head)
        return released, i + 4 - old

    def _check_partial_head(self, start: int) -> None:
        buf = self._rq_buf
        if len(buf) > self.max_head:
            raise Refusal(431, "request head too large")
        nl = buf.find(b"\n", start)
        while nl >= 0:
            if nl == 0 or buf[nl - 1] != 13:
                raise Refusal(400, "bare LF in the request head")
            nl = buf.find(b"\n", nl + 1)
        if self._rq_line_ok:
            return
        skip = 0
        while buf.startswith(b"\r\n", skip):
            skip += 2
        nl = buf.find(b"\n", skip)
        if nl >= 0:
            if REQUEST_LINE.fullmatch(buf, skip, nl) is None:
                raise Refusal(400, "not an HTTP/1.x request line")
            self._rq_line_ok = True
            return
        sp = buf.find(b" ", skip)
        method_end = len(buf) if sp < 0 else sp
        if buf[skip:] == b"\r":
            return
        if method_end - skip > MAX_METHOD or METHOD.fullmatch(buf, skip, method_end) is None:
            raise Refusal(400, "not an HTTP request")

    def _begin_request(self, ex: Exchange, head: bytes) -> None:
        ex.bytes_in += len(head)
        parsed = request_memo.get(head)
        if parsed is None:
            try:
                parsed = parse_request_head(head)
            except Refusal:
                _guess_request_line(ex, head)
                raise
            remember(request_memo, head, parsed)
        ex.method, ex.target, ex.version, ex.keep_alive, ex.upgrade, ex.user_agent, framing = parsed
        ex.head_done = True
        self._unanswered.append(ex)
        if framing == 0:
            self._request_done(ex)
        elif framing > 0:
            self._rq_left = framing
            self._rq_state = _R_LENGTH
        else:
            self._rq_chunks.reset()
            self._rq_state = _R_CHUNKED

    def _request_done(self, ex: Exchange) -> None:
        ex.request_done = True
        if ex.t_end is not None:
            self._finish(ex)
        if (ex.upgrade or ex.method == b"CONNECT") and not ex.response_done:
            self._rq_state = _R_WAIT
            return
        self._rq_ex = None
        if not ex.keep_alive:
            self._rq_state = _R_DISCARD
        elif self._rq_state != _R_HEAD:
            self._rq_state = _R_HEAD

    def _refuse(self, refusal: Refusal, now: float) -> None:
        ex = self._rq_ex
        if ex is None:
            ex = Exchange(now)
            self._live.append(ex)
        if not ex.head_done and self._rq_buf:
            ex.bytes_in = len(self._rq_buf)
            _guess_request_line(ex, self._rq_buf)
        ex.refused = True
        ex.error = "bad_request"
        ex.status = refusal.status
        ex.reason = refusal.why
        self.refused = ex
        self._rq_ex = None
        self._rq_state = _R_REFUSED
        self._rq_buf.clear()

    # --- response side --------------------------------------------------------

    def feed_response(self, data: bytes, now: float) -> Sequence[Exchange]:
        """Take bytes from the app; return the exchanges whose response ends in them."""
        state = self._rs_state
        if state == _S_TUNNEL:
            tunnel = self._rs_ex
            if tunnel is not None:
                tunnel.bytes_out += len(data)
            return _NOTHING
        if state == _S_DONE:
            return _NOTHING
        if state == _S_HEAD and self._rs_ex is None and self._unanswered and not self._rs_buf:
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
                        self._rs_state = _S_DONE
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
            if state == _S_HEAD:
                pos = self._response_head(ex, data, pos)
                if pos < 0:
                    return completed
                state = self._rs_state
                if state == _S_HEAD:
                    continue  # an interim response: the final one follows
            # The body, if any, in the same pass.
            if state == _S_LENGTH:
                left = self._rs_left
                if end - pos < left:
                    self._rs_left = left - (end - pos)
                    ex.bytes_out += end - pos
                    return completed
                ex.bytes_out += left
                pos += left
            elif state == _S_CHUNKED:
                start = pos
                try:
                    pos = self._rs_chunks.feed(data, pos)
                except Refusal:  # the app's own framing is broken: only the close ends it
                    self._rs_keep = False
                    self._rs_state = _S_UNTIL_CLOSE
                    ex.bytes_out += end - start
                    return completed
                ex.bytes_out += pos - start
                if not self._rs_chunks.done:
                    return completed
            else:  # _S_UNTIL_CLOSE or _S_TUNNEL: everything from here on
                ex.bytes_out += end - pos
                return completed
            # The response in progress is complete.
            ex.response_done = True
            self._rs_ex = None
            if not ex.orphan:
                completed.append(ex)
            if not self._rs_keep:
                self.must_close = True
                self._rs_state = _S_DONE
                break
            self._rs_state = state = _S_HEAD
            if self._rq_state == _R_WAIT and self._rq_ex is ex:
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
            self._rs_state = _S_LENGTH
        elif framing == 0:  # no body: complete at once
            self._rs_left = 0
            self._rs_state = _S_LENGTH
        elif framing == CHUNKED:
            self._rs_chunks.reset()
            self._rs_state = _S_CHUNKED
        elif framing == UNTIL_CLOSE:
            self._rs_keep = False
            self._rs_state = _S_UNTIL_CLOSE
        else:
            self._start_tunnel(ex)

    def _opaque_response(self, ex: Exchange) -> None:
        """Not an HTTP response: pass it through until the app closes; the sample says so."""
        self._rs_buf.clear()
        ex.error = "upstream_reset"
        self._rs_keep = False
        self._rs_state = _S_UNTIL_CLOSE

    def _start_tunnel(self, ex: Exchange) -> None:
        ex.tunnel = True
        self._rs_state = _S_TUNNEL
        self._rq_state = _R_TUNNEL
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
        self._rq_state = _R_HEAD
        if self._rq_held:
            held = bytes(self._rq_held)
            self._rq_held.clear()
            self.released += self.feed_request(held, now)

    @property
    def awaiting_upgrade(self) -> bool:
        """The request side holds what comes until the app answers an Upgrade or CONNECT."""
        return self._rq_state == _R_WAIT

    def take_released(self) -> bytes:
        released = bytes(self.released)
        self.released.clear()
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
        if self._rs_state == _S_UNTIL_CLOSE and ex is not None:
            self._rs_ex = None
            self._rs_state = _S_DONE
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
        self._rq_state = _R_REFUSED
        self._rs_state = _S_DONE

    def _finish(self, ex: Exchange) -> None:
        if self._live and self._live[0] is ex:
            self._live.popleft()
        elif ex in self._live:
            self._live.remove(ex)
        else:
            return
        self.finished.append(ex)

    def _drop(self, ex: Exchange) -> None:
        if ex in self._live:
            self._live.remove(ex)


def _guess_request_line(ex: Exchange, head: bytes | bytearray) -> None:
    """Method and target of a refused head, when its first line is readable (for the sample)."""
    guess = request_line_guess(head)
    if guess is not None:
        ex.method, ex.target = guess


def _orphan(now: float) -> Exchange:
    """Stands in for the request of a response nobody asked for (it is forwarded, never reported)."""
    ex = Exchange(now)
    ex.orphan = True
    ex.method = b"GET"
    return ex
