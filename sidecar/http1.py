"""HTTP/1.x framing of one proxied connection, both directions, without changing a byte.

`ExchangeTracker` follows the request stream (client -> app) and the response
stream (app -> client) of one connection as two small state machines and pairs
them into `Exchange` records: pipelined requests are answered in order, 1xx
interim responses are skipped, `101 Switching Protocols` (and CONNECT) turn the
connection into a tunnel. Body bytes are skipped by counting, never copied or
searched. Requests that cannot be framed safely are refused (request smuggling,
RFC 9112 sections 6.3 and 11.2). Pure: no I/O and no clock; callers pass `now`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

# Body framings (RFC 9112 section 6.3); a non-negative value is a Content-Length.
CHUNKED: Final = -1
UNTIL_CLOSE: Final = -2  # a response delimited by the connection closing
TUNNEL: Final = -3  # 101 or a CONNECT's 2xx: no more HTTP on this connection

MAX_CHUNK_LINE: Final = 4096  # chunk-size line with extensions
_MAX_LENGTH_DIGITS: Final = 18  # keeps Content-Length below 2**63
_MAX_METHOD: Final = 64

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# A field line's value: VCHAR, obs-text, SP and HTAB; no other control byte (RFC 9110 5.5).
_FIELD_LINE = _TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n"
# The whole request head, checked at once: strict request-line, field lines
# without obs-fold, without whitespace before the colon, CRLF only.
_REQUEST_HEAD = re.compile(
    rb"(?:\r\n)*(" + _TCHAR + rb"+) ([^\x00-\x20\x7f]+) HTTP/1\.([01])\r\n(?:" + _FIELD_LINE + rb")*\r\n"
)
_REQUEST_LINE = re.compile(_TCHAR + rb"+ [^\x00-\x20\x7f]+ HTTP/1\.[01]\r")
_METHOD = re.compile(_TCHAR + rb"*")
_TRAILER_LINE = re.compile(_TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*")
# Only the fields framing and sampling need; names match in any case and are
# told apart by their length (10 is Connection or User-Agent).
_REQUEST_FIELDS = re.compile(
    rb"\n((?i:content-length|transfer-encoding|connection|upgrade|user-agent)):[ \t]*([^\r\n]*)")
# Responses come from the application the sidecar serves: read leniently
# (bare LF, space before the colon, no reason phrase), as clients do.
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?:[ \t]([^\r\n]*))?\r?\n")
_RESPONSE_FIELDS = re.compile(rb"\n((?i:content-length|transfer-encoding|connection))[ \t]*:[ \t]*([^\r\n]*)")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")

_NOTHING: Final[tuple[()]] = ()


class Refusal(Exception):
    """A request the proxy must not forward: answer `status`, then close."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


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


# --- protocol rules: small pure functions -----------------------------------


def content_length(values: list[bytes]) -> int:
    """The one length that all Content-Length values agree on (RFC 9112 6.3 item 5)."""
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= _MAX_LENGTH_DIGITS:
        return int(values[0])  # the usual case
    length = -1
    for value in values:
        for part in value.split(b","):
            part = part.strip(b" \t")
            if not part.isdigit() or len(part) > _MAX_LENGTH_DIGITS:
                raise Refusal(400, "Content-Length is not a number")
            n = int(part)
            if length >= 0 and n != length:
                raise Refusal(400, "conflicting Content-Length values")
            length = n
    return length


def chunked_is_final(transfer_encoding: bytes) -> bool:
    """True if `chunked` is the last transfer coding and appears once (RFC 9112 6.1)."""
    codings = [c.strip(b" \t") for c in transfer_encoding.lower().split(b",")]
    codings = [c for c in codings if c]
    return bool(codings) and codings[-1] == b"chunked" and codings.count(b"chunked") == 1


def request_framing(version: int, lengths: list[bytes], transfer_encoding: bytes | None) -> int:
    """How a request's body is delimited: a length or CHUNKED; raises Refusal."""
    if transfer_encoding is not None:
        # Both headers is the classic smuggling vector: refuse instead of
        # choosing one (RFC 9112 6.1 allows either; nginx and Envoy refuse).
        if lengths:
            raise Refusal(400, "both Content-Length and Transfer-Encoding")
        if version == 0:
            raise Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
        if not chunked_is_final(transfer_encoding):
            raise Refusal(400, "Transfer-Encoding without chunked last")
        return CHUNKED
    return content_length(lengths) if lengths else 0


def response_framing(method: bytes, status: int, lengths: list[bytes], transfer_encoding: bytes | None) -> int:
    """How a response's body is delimited (RFC 9112 6.3): a length, CHUNKED, UNTIL_CLOSE or TUNNEL."""
    if method == b"HEAD" or status < 200 or status in (204, 304):
        return TUNNEL if status == 101 else 0
    if method == b"CONNECT" and status < 300:
        return TUNNEL
    if transfer_encoding is not None:
        return CHUNKED if chunked_is_final(transfer_encoding) else UNTIL_CLOSE
    if lengths:
        try:
            return content_length(lengths)
        except Refusal:  # unusable length: only the close can end it
            return UNTIL_CLOSE
    return UNTIL_CLOSE


def persistent(version: int, connection: bytes) -> bool:
    """Whether a message leaves the connection open (RFC 9112 9.3)."""
    if not connection:
        return version == 1
    connection = connection.lower()
    if connection == b"keep-alive":
        return True
    if connection == b"close":
        return False
    tokens = {t.strip(b" \t") for t in connection.split(b",")}
    if version == 0:
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens


# Heads repeat (the same client asks the same thing; the same app answers
# alike), and a byte-identical head always parses the same: parses of short
# heads are remembered, which keeps most of the parsing off the hot path.
MEMO_HEAD_BYTES: Final = 1024  # longer heads are parsed every time
MEMO_ENTRIES: Final = 512  # per direction; the memo starts afresh when full
MAX_REASON: Final = 64

RequestHead = tuple[bytes, bytes, int, bool, bool, bytes, int]  # method, target, version, keep_alive, upgrade, UA, body
ResponseHead = tuple[int, str, int, bool]  # status, reason, body framing (unless HEAD or CONNECT), keep-alive
_request_memo: dict[bytes, RequestHead] = {}
_response_memo: dict[bytes, ResponseHead | None] = {}
_UNKNOWN: Final[Any] = object()
_METHODS_FRAMING_RESPONSES: Final = frozenset((b"HEAD", b"CONNECT"))


def parse_request_head(head: bytes) -> RequestHead:
    """Check a complete request head strictly and read what framing needs; raises Refusal."""
    match = _REQUEST_HEAD.fullmatch(head)
    if match is None:
        raise Refusal(400, "malformed request head")
    method, target, minor = match.groups()
    lengths: list[bytes] = []
    transfer_encoding: bytes | None = None
    connection = b""
    upgrade = False
    user_agent = b""
    for name, value in _REQUEST_FIELDS.findall(head):
        size = len(name)
        if size == 14:
            lengths.append(value)
        elif size == 17:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        elif size == 7:
            upgrade = True
        elif name[0] in b"cC":
            connection = connection + b"," + value if connection else value
        else:
            user_agent = value
    version = 1 if minor == b"1" else 0
    framing = request_framing(version, lengths, transfer_encoding)
    return (method, target, version, persistent(version, connection),
            upgrade and b"upgrade" in connection.lower(), user_agent, framing)


def parse_response_head(head: bytes, method: bytes) -> ResponseHead | None:
    """Read a complete response head (leniently); None if it is not HTTP/1.x."""
    match = _STATUS_LINE.match(head)
    if match is None:
        return None
    minor, code, reason = match.groups()
    status = int(code)
    lengths: list[bytes] = []
    transfer_encoding: bytes | None = None
    connection = b""
    for name, value in _RESPONSE_FIELDS.findall(head, match.end() - 1):
        size = len(name)
        if size == 14:
            lengths.append(value)
        elif size == 17:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        else:
            connection = connection + b"," + value if connection else value
    text = reason.rstrip(b" \t")[:MAX_REASON].decode("latin-1") if reason else ""
    return (status, text, response_framing(method, status, lengths, transfer_encoding),
            persistent(1 if minor == b"1" else 0, connection))


def _remember(memo: dict[bytes, Any], head: bytes, parsed: Any) -> None:
    if len(head) <= MEMO_HEAD_BYTES:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[head] = parsed


def simple_response(status: int, reason: str, text: str) -> bytes:
    """A complete response the proxy writes itself; it always closes the connection."""
    body = text.encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


# --- chunked bodies ------------------------------------------------------------

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedBody:
    """Walks one chunked body (RFC 9112 7.1) by counting; holds only a partial size or trailer line.

    `strict` (requests) refuses bare LF and malformed lines; otherwise
    (responses) bare LF is accepted and errors still raise `Refusal`.
    """

    __slots__ = ("left", "line", "max_trailer", "state", "strict", "trailer_bytes")

    def __init__(self, strict: bool, max_trailer: int) -> None:
        self.strict = strict
        self.max_trailer = max_trailer
        self.state = _SIZE
        self.left = 0
        self.line = bytearray()
        self.trailer_bytes = 0

    def reset(self) -> None:
        self.state = _SIZE
        self.left = 0
        self.trailer_bytes = 0
        self.line.clear()

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, pos: int) -> int:
        """Walk `data[pos:]`; return where the body ends in it, or `len(data)` if it goes on."""
        end = len(data)
        while pos < end:
            state = self.state
            if state == _DATA:
                if end - pos < self.left:
                    self.left -= end - pos
                    return end
                pos += self.left
                self.left = 2
                self.state = _DATA_END
            elif state == _DATA_END:
                byte = data[pos]
                if byte == 13 and self.left == 2:
                    self.left = 1
                elif byte == 10 and (self.left == 1 or not self.strict):
                    self.state = _SIZE
                else:
                    raise Refusal(400, "chunk data not followed by CRLF")
                pos += 1
            elif state == _DONE:
                return pos
            else:  # _SIZE or _TRAILER: a line
                nl = data.find(b"\n", pos)
                limit = MAX_CHUNK_LINE if state == _SIZE else self.max_trailer - self.trailer_bytes
                if nl < 0:
                    self.line += data[pos:]
                    if len(self.line) > limit:
                        raise Refusal(400, "chunk line too long")
                    return end
                if self.line:
                    self.line += data[pos:nl]
                    line = bytes(self.line)
                    self.line.clear()
                else:
                    line = data[pos:nl]
                if len(line) >= limit:
                    raise Refusal(400, "chunk line too long")
                pos = nl + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                elif self.strict:
                    raise Refusal(400, "bare LF in a chunked body")
                if state == _SIZE:
                    self._size_line(line)
                else:
                    self._trailer_line(line)
        return pos

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise Refusal(400, "bad chunk size")
        self.left = int(match.group(1), 16)
        self.state = _DATA if self.left else _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self.state = _DONE
            return
        self.trailer_bytes += len(line) + 2
        if self.strict and _TRAILER_LINE.fullmatch(line) is None:
            raise Refusal(400, "bad trailer field")


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
            parsed = _request_memo.get(data)
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
            if _REQUEST_LINE.fullmatch(buf, skip, nl) is None:
                raise Refusal(400, "not an HTTP/1.x request line")
            self._rq_line_ok = True
            return
        sp = buf.find(b" ", skip)
        method_end = len(buf) if sp < 0 else sp
        if buf[skip:] == b"\r":
            return
        if method_end - skip > _MAX_METHOD or _METHOD.fullmatch(buf, skip, method_end) is None:
            raise Refusal(400, "not an HTTP request")

    def _begin_request(self, ex: Exchange, head: bytes) -> None:
        ex.bytes_in += len(head)
        parsed = _request_memo.get(head)
        if parsed is None:
            try:
                parsed = parse_request_head(head)
            except Refusal:
                _guess_request_line(ex, head)
                raise
            _remember(_request_memo, head, parsed)
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
            after = _find_head_end(buf, max(0, old - 3))
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
            parsed = _response_memo.get(head, _UNKNOWN)
            if parsed is _UNKNOWN or ex.method in _METHODS_FRAMING_RESPONSES:
                bare = data.find(b"\n\n", pos, after)
                if bare >= 0:
                    after = bare + 2
                    head = data[pos:after]
                parsed = self._parse_response_head(head, ex.method)
        else:
            after = _find_head_end(data, pos)
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
        if method not in _METHODS_FRAMING_RESPONSES:  # the framing depends on them: not remembered
            _remember(_response_memo, head, parsed)
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
    line = bytes(head[:4096]).lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) == 3 and _METHOD.fullmatch(parts[0]) and parts[2].startswith(b"HTTP/"):
        ex.method, ex.target = parts[0][:_MAX_METHOD], parts[1]


def _orphan(now: float) -> Exchange:
    """Stands in for the request of a response nobody asked for (it is forwarded, never reported)."""
    ex = Exchange(now)
    ex.orphan = True
    ex.method = b"GET"
    return ex


def _find_head_end(data: bytes | bytearray, pos: int) -> int:
    """The position just after a response head's empty line (CRLF or bare LF), or -1."""
    crlf = data.find(b"\r\n\r\n", pos)
    lf = data.find(b"\n\n", pos, crlf if crlf >= 0 else len(data))
    if lf >= 0:
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1
