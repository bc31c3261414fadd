"""`RequestSide`: the request half of an `ExchangeTracker`: frames the client's bytes into requests, strictly.

Heads are held until complete and checked whole; a body is skipped by
counting (Content-Length) or by its chunk lines, never copied or searched.
A request that cannot be framed safely is refused (request smuggling, RFC
9112 sections 6.3 and 11.2) and nothing after it reaches the app. Pure: no
I/O and no clock.
"""

from __future__ import annotations

from sidecar.exchange import Exchange
from sidecar.http1.framing import Refusal
from sidecar.http1.heads import (
    MAX_METHOD,
    METHOD,
    REQUEST_LINE,
    parse_request_head,
    remember,
    request_line_guess,
    request_memo,
)
from sidecar.http1.state import (
    R_CHUNKED,
    R_DISCARD,
    R_HEAD,
    R_LENGTH,
    R_REFUSED,
    R_TUNNEL,
    R_WAIT,
    TrackerState,
)


class RequestSide(TrackerState):
    """`feed_request(data, now)`; after it, `refused` may name a request to answer with an error."""

    def feed_request(self, data: bytes, now: float) -> bytes:
        """Take bytes from the client; return those that may be forwarded now."""
        state = self._rq_state
        if state == R_HEAD and len(data) <= self._memo_limit and not self._rq_buf:
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
        if state >= R_WAIT:
            if state == R_TUNNEL:
                ex = self._rq_ex
                if ex is not None:
                    ex.bytes_in += len(data)
                return data
            if state == R_WAIT:
                self._rq_held += data
            return b""
        end = len(data)
        pos = 0
        stop = end  # bytes from here on are held or dropped
        released = b""  # held head bytes now cleared to go first
        try:
            while pos < end:
                if state == R_HEAD:
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
                elif state == R_LENGTH:
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
                elif state == R_CHUNKED:
                    ex = self._rq_ex
                    assert ex is not None
                    start = pos
                    stop = pos  # a bad chunk line must not reach the app
                    pos = self._rq_chunks.feed(data, pos)
                    stop = end
                    ex.bytes_in += pos - start
                    if self._rq_chunks.done:
                        self._request_done(ex)
                elif state == R_DISCARD:
                    stop = pos
                    break
                elif state == R_WAIT:
                    # Until the app answers the Upgrade (or CONNECT), what follows may be
                    # another protocol or more requests: held, neither forwarded nor framed.
                    self._rq_held += data[pos:]
                    stop = pos
                    break
                else:  # R_TUNNEL: the rest is not HTTP
                    ex = self._rq_ex
                    if ex is not None:
                        ex.bytes_in += end - pos
                    break
                state = self._rq_state
        except Refusal as refusal:
            self._refuse(refusal, now)
            if state == R_HEAD:
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
                if parsed[0] == b"CONNECT" and not self.allow_connect:
                    # After a 2xx to CONNECT the rest of the connection is a tunnel, one opaque sample: an app
                    # that kept speaking HTTP there would hide its requests. Only a proxy (--allow-connect) gets
                    # it, and such heads are memoised only then (so the memo's fast path never meets one here).
                    raise Refusal(405, "CONNECT is not allowed (the sidecar's --allow-connect is off)")
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
            self._rq_state = R_LENGTH
        else:
            self._rq_chunks.reset()
            self._rq_state = R_CHUNKED

    def _request_done(self, ex: Exchange) -> None:
        ex.request_done = True
        if ex.t_end is not None:
            self._finish(ex)
        if (ex.upgrade or ex.method == b"CONNECT") and not ex.response_done:
            self._rq_state = R_WAIT
            return
        self._rq_ex = None
        if not ex.keep_alive:
            self._rq_state = R_DISCARD
        elif self._rq_state != R_HEAD:
            self._rq_state = R_HEAD

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
        self._rq_state = R_REFUSED
        self._rq_buf.clear()


def _guess_request_line(ex: Exchange, head: bytes | bytearray) -> None:
    """Method and target of a refused head, when its first line is readable (for the sample)."""
    guess = request_line_guess(head)
    if guess is not None:
        ex.method, ex.target = guess

