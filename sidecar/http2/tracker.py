"""`H2Tracker`: HTTP/2 streams (and gRPC calls) of one proxied connection as `Exchange` records, both directions.

Each direction's bytes go through a `FrameReader`; its header blocks are
decoded with python-hyper's HPACK decoder (`BlockDecoder`), one per
direction, whose dynamic tables are kept in step with the peers' (every
block is decoded, also those
of streams already over and PUSH_PROMISEs; SETTINGS_HEADER_TABLE_SIZE bounds
the other direction's table once acknowledged). One exchange per stream:
request HEADERS begin it, the later END_STREAM (or RST_STREAM, GOAWAY, the
connection's end) finishes it. A response that declared its content-length
ends with its last DATA byte: some servers (hypercorn) send END_STREAM in an
empty DATA frame after the body, and a client that has the whole body may
close the connection before that frame is read (a gRPC response, whose
outcome is in its trailers, still ends only with them). Anything the
tracker cannot follow stops the tracking, never the traffic: `broken` is
set, open streams are finished as `untracked`, and later bytes are ignored.
Pure: no I/O and no clock; callers pass `now`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import partial
from typing import Final

from sidecar.exchange import Exchange
from sidecar.http2 import grpc
from sidecar.http2.blocks import BlockDecoder
from sidecar.http2.frames import (
    ACK,
    END_STREAM,
    GOAWAY,
    RST_STREAM,
    SETTINGS,
    FrameError,
    FrameReader,
)

_SETTING: Final = struct.Struct(">HL")
_HEADER_TABLE_SIZE: Final = 0x1
_NO_ERROR: Final = 0x0
MAX_LIVE: Final = 10_000  # open streams followed at once; peers allow far fewer (SETTINGS_MAX_CONCURRENT_STREAMS)
MAX_UNACKED: Final = 64  # SETTINGS frames awaiting their ACK
_MAX_LENGTH_DIGITS: Final = 18  # keeps a content-length below 2**63
_NO_CONTENT: Final = (204, 304)  # statuses whose responses have no content, whatever content-length says


class _Peer:
    """What the tracker keeps of one side: the decoder of its header blocks, its SETTINGS awaiting ACK, its GOAWAY."""

    __slots__ = ("decoder", "goaway", "opens", "unacked", "word")

    def __init__(self, max_header_list: int, *, opens: int, word: str) -> None:
        self.decoder = BlockDecoder(max_header_list)
        self.unacked: list[int | None] = []  # SETTINGS_HEADER_TABLE_SIZE of each unacknowledged SETTINGS, or None
        self.goaway: int | None = None  # last-stream-id of its GOAWAY: the other side's streams above were refused
        self.opens = opens  # the parity of the stream ids it opens (the client odd, the server's pushes even)
        self.word = word  # the error word of streams it cuts short by a GOAWAY


class H2Tracker:
    """Follows one HTTP/2 connection: `feed_client` / `feed_server` take each direction's bytes.

    `take_finished` gives the streams that are over.
    `upgrade` is an HTTP/1 request the app answered `101` with `Upgrade: h2c`:
    it becomes stream 1, its request already complete; its response comes as
    frames on stream 1. The client's preface still follows the 101.
    """

    def __init__(self, *, max_header_list: int = 65536, upgrade: Exchange | None = None) -> None:
        self.max_header_list = max_header_list
        self.broken = False
        self.why = ""  # what stopped the tracking, when `broken`
        self.finished: list[Exchange] = []
        self._streams: dict[int, Exchange] = {}
        self._lengths: dict[int, int] = {}  # declared content-length of the responses still coming
        self._closed = False
        self._now = 0.0
        self._last_client = 0  # highest stream id the client opened
        self._last_push = 0  # highest stream id the server promised
        self._c = client = _Peer(max_header_list, opens=1, word="client_closed")
        self._s = server = _Peer(max_header_list, opens=0, word="upstream_reset")
        # Header blocks may be up to 4 times their decoded size (Huffman codes run to 30 bits a byte).
        max_block = 4 * max_header_list + 1024
        self._client = FrameReader(self._client_headers, self._client_data, partial(self._control, client, server),
                                   client=True, max_block=max_block)
        self._server = FrameReader(self._server_headers, self._server_data, partial(self._control, server, client),
                                   client=False, max_block=max_block)
        if upgrade is not None:  # HTTP/1 saw its request and the 101; the response proper is HTTP/2's
            upgrade.protocol = "h2"
            upgrade.head_done = upgrade.request_done = True
            upgrade.response_done = upgrade.tunnel = False
            upgrade.reason = ""
            upgrade.t_end = None
            upgrade.bytes_out = 0  # the 101's head was HTTP/1's: an h2 stream's bytes are its DATA payload
            self._streams[1] = upgrade
            self._last_client = 1

    # --- what the relay calls ---------------------------------------------------

    @property
    def live(self) -> int:
        """Streams begun and not yet finished."""
        return len(self._streams)

    def feed_client(self, data: bytes, now: float) -> None:
        """Bytes the client sent toward the app (the connection preface included). Never raises."""
        if self.broken or self._closed:
            return
        self._now = now
        try:
            self._client.feed(data)
        except Exception as e:  # whatever it was, the relay goes on: tracking stops and says why
            self._break(f"client: {type(e).__name__}: {e}", now)

    def feed_server(self, data: bytes, now: float) -> None:
        """Bytes the app sent toward the client. Never raises."""
        if self.broken or self._closed:
            return
        self._now = now
        try:
            self._server.feed(data)
        except Exception as e:
            self._break(f"server: {type(e).__name__}: {e}", now)

    def take_finished(self) -> list[Exchange]:
        """The streams that are over, in the order they ended."""
        done, self.finished = self.finished, []
        return done

    def close(self, cause: str, now: float) -> None:
        """The connection is over; `cause` is "client", "upstream", "timeout", "done" or "error".

        A stream whose response had ended is complete; any other gets the
        error word HTTP/1 gives an exchange cut the same way.
        """
        if self._closed:
            return
        self._closed = True
        word = "client_closed" if cause in ("client", "timeout") else "upstream_reset"
        for ex in self._streams.values():
            if not ex.response_done:
                if ex.error is None:
                    ex.error = word
                ex.t_end = now
            self.finished.append(ex)
        self._streams.clear()
        self._lengths.clear()

    # --- the client's frames ------------------------------------------------------

    def _client_headers(self, sid: int, flags: int, block: bytes, promised: int) -> None:
        headers = self._c.decoder.decode(block)
        if promised:
            raise FrameError("PUSH_PROMISE from the client")
        ex = self._streams.get(sid)
        if ex is not None:  # trailers of a request
            if flags & END_STREAM:
                self._request_ended(sid, ex)
            return
        if sid <= self._last_client:
            return  # a stream already over (reset): decoded above to keep the table in step
        if not sid & 1:
            raise FrameError(f"the client opened stream {sid} (even ids are the server's)")
        self._last_client = sid
        now = self._now
        ex = Exchange(now)
        ex.protocol = "h2"
        ex.head_done = True
        _read_request(ex, headers)
        self._open(sid, ex)
        if self._s.goaway is not None and sid > self._s.goaway:
            self._end(sid, ex, self._s.word)
        elif flags & END_STREAM:
            self._request_ended(sid, ex)

    def _client_data(self, sid: int, flags: int, size: int) -> None:
        ex = self._streams.get(sid)
        if ex is not None:
            ex.bytes_in += size
            if flags & END_STREAM:
                self._request_ended(sid, ex)

    # --- the server's frames ------------------------------------------------------

    def _server_headers(self, sid: int, flags: int, block: bytes, promised: int) -> None:
        headers = self._s.decoder.decode(block)
        now = self._now
        if promised:  # a request the server makes on the client's behalf; its response comes on `promised`
            if promised & 1 or promised <= self._last_push:
                raise FrameError(f"PUSH_PROMISE of stream {promised}")
            self._last_push = promised
            ex = Exchange(now)
            ex.protocol = "h2"
            ex.head_done = ex.request_done = True
            _read_request(ex, headers)
            self._open(promised, ex)
            if self._c.goaway is not None and promised > self._c.goaway:
                self._end(promised, ex, self._c.word)
            return
        found = self._streams.get(sid)
        if found is None:
            return  # a stream already over: decoded above to keep the table in step
        ex = found
        if ex.t_first is None:
            ex.t_first = now
        if ex.status < 200:  # no final response yet: these are its headers (or an interim 1xx)
            status = 0
            code: int | None = None
            message = b""
            length: bytes | None = None
            for name, value in headers:
                if name == b":status":
                    status = int(value) if len(value) == 3 and value.isdigit() else 0
                elif name == b"content-length":
                    length = value if length is None or length == value else b""  # differing values: none
                elif name == b"content-type":
                    if grpc.is_grpc(value):
                        ex.protocol = "grpc"
                elif name == b"grpc-status":
                    code = grpc.parse_status(value)
                elif name == b"grpc-message":
                    message = value
            if 100 <= status < 200 and not flags & END_STREAM:
                return  # interim: only the first byte's time counts
            ex.status = status
            if length and not flags & END_STREAM and len(length) <= _MAX_LENGTH_DIGITS and length.isdigit() \
                    and ex.method != b"HEAD" and status not in _NO_CONTENT:
                self._lengths[sid] = int(length)  # checked below, once gRPC's content-type is known
        else:  # trailers
            code = None
            message = b""
            for name, value in headers:
                if name == b"grpc-status":
                    code = grpc.parse_status(value)
                elif name == b"grpc-message":
                    message = value
        if code is not None and ex.protocol == "grpc":
            ex.grpc_status = code
            ex.status = grpc.http_status(code)
            ex.reason = grpc.code_name(code)
            if message:
                ex.grpc_message = grpc.decode_message(message)
        if flags & END_STREAM:
            self._response_ended(sid, ex)
        elif sid in self._lengths:
            if ex.protocol == "grpc":
                del self._lengths[sid]  # a gRPC call's outcome comes in its trailers, whatever the length
            elif self._lengths[sid] <= ex.bytes_out:  # content-length 0, or trailers after the whole body
                self._response_ended(sid, ex)

    def _server_data(self, sid: int, flags: int, size: int) -> None:
        ex = self._streams.get(sid)
        if ex is not None:
            ex.bytes_out += size
            if flags & END_STREAM:
                self._response_ended(sid, ex)
            elif self._lengths:
                declared = self._lengths.get(sid)
                if declared is not None and declared <= ex.bytes_out:
                    self._response_ended(sid, ex)  # the whole declared body: complete, END_STREAM or not

    # --- either side's control frames ---------------------------------------------

    def _control(self, own: _Peer, peer: _Peer, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        """RST_STREAM, SETTINGS or GOAWAY from `own`."""
        if ftype == RST_STREAM:
            self._reset(sid, payload)
        elif ftype == SETTINGS:
            self._settings(flags, payload, own, peer)
        elif ftype == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            own.goaway = last if own.goaway is None else min(last, own.goaway)
            # The streams the peer opened above it were never processed: `own`'s word for their end.
            for other, ex in list(self._streams.items()):
                if other > last and other & 1 == peer.opens:
                    self._end(other, ex, own.word)

    # --- streams ------------------------------------------------------------------

    def _open(self, sid: int, ex: Exchange) -> None:
        if len(self._streams) >= MAX_LIVE:
            raise FrameError(f"more than {MAX_LIVE} streams open at once")
        self._streams[sid] = ex

    def _request_ended(self, sid: int, ex: Exchange) -> None:
        ex.request_done = True
        ex.t_end = self._now
        if ex.response_done:
            del self._streams[sid]
            self.finished.append(ex)

    def _response_ended(self, sid: int, ex: Exchange) -> None:
        if self._lengths:
            self._lengths.pop(sid, None)
        ex.response_done = True
        ex.t_end = self._now
        if ex.request_done:
            del self._streams[sid]
            self.finished.append(ex)

    def _end(self, sid: int, ex: Exchange, error: str) -> None:
        """The stream ends before both sides ended it."""
        del self._streams[sid]
        self._lengths.pop(sid, None)
        if ex.error is None:
            ex.error = error
        ex.t_end = self._now
        self.finished.append(ex)

    def _reset(self, sid: int, payload: bytes) -> None:
        ex = self._streams.get(sid)
        if ex is None:
            return
        if ex.response_done and int.from_bytes(payload, "big") == _NO_ERROR:
            # A complete response, then "stop sending the request" (RFC 9113 section 8.1): no fault.
            del self._streams[sid]
            ex.t_end = self._now
            self.finished.append(ex)
        else:
            self._end(sid, ex, "stream_reset")

    def _settings(self, flags: int, payload: bytes, own: _Peer, peer: _Peer) -> None:
        """A SETTINGS frame from `own`: its HEADER_TABLE_SIZE bounds the table of `peer`'s blocks."""
        if flags & ACK:
            if payload:
                raise FrameError("SETTINGS ACK with a payload")
            if peer.unacked:  # the peer's oldest unacknowledged SETTINGS now binds own's encoder (section 6.5.3)
                acked = peer.unacked.pop(0)
                if acked is not None:
                    own.decoder.max_allowed_table_size = acked
            return
        if len(payload) % 6:
            raise FrameError(f"SETTINGS of {len(payload)} bytes (not a multiple of 6)")
        size: int | None = None
        for ident, value in _SETTING.iter_unpack(payload):
            if ident == _HEADER_TABLE_SIZE:
                size = value
        if len(own.unacked) >= MAX_UNACKED:
            raise FrameError(f"more than {MAX_UNACKED} SETTINGS frames unacknowledged")
        own.unacked.append(size)
        if size is not None and size > peer.decoder.max_allowed_table_size:
            # A larger table may be used as soon as the encoder has read this, which can be
            # before its ACK reaches us; a smaller one binds only once acknowledged.
            peer.decoder.max_allowed_table_size = size

    def _break(self, why: str, now: float) -> None:
        """Tracking stops: the open streams are finished as untracked; later bytes are ignored."""
        self.broken = True
        self.why = why
        for ex in self._streams.values():
            ex.untracked = True
            if ex.t_end is None or not ex.response_done:
                ex.t_end = now
            self.finished.append(ex)
        self._streams.clear()
        self._lengths.clear()


def _read_request(ex: Exchange, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """What a request's headers tell its exchange."""
    for name, value in headers:
        if name == b":method":
            ex.method = value
        elif name == b":path":
            ex.target = value
        elif name == b"user-agent":
            ex.user_agent = value
        elif name == b"content-type" and grpc.is_grpc(value):
            ex.protocol = "grpc"
