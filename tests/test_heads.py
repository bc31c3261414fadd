"""Request and response heads: strict and lenient reading, the memo's bounds, the proxy's own responses."""

from __future__ import annotations

import pytest

from sidecar.http1.framing import CHUNKED, UNTIL_CLOSE, Refusal
from sidecar.http1.heads import (
    MAX_REASON,
    MEMO_ENTRIES,
    MEMO_HEAD_BYTES,
    find_head_end,
    parse_request_head,
    parse_response_head,
    remember,
    request_line_guess,
    simple_response,
)
from sidecar.http1.tracker import ExchangeTracker

GET = b"GET /users/42?token=secret HTTP/1.1\r\nHost: app\r\nUser-Agent: kube-probe/1.29\r\n\r\n"


def test_a_request_head_gives_what_framing_and_sampling_need() -> None:
    assert parse_request_head(GET) == (b"GET", b"/users/42?token=secret", 1, True, b"", b"kube-probe/1.29", 0)
    upload = (b"POST /u HTTP/1.0\r\nCONTENT-LENGTH: 12\r\nConnection: keep-alive\r\n"
              b"Upgrade: h2c\r\n\r\n")  # Upgrade without Connection: upgrade is not an upgrade
    assert parse_request_head(upload) == (b"POST", b"/u", 0, True, b"", b"", 12)
    ws = b"GET /chat HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert parse_request_head(ws)[4] == b"websocket"  # the protocol asked for (h2c is handed to HTTP/2)
    h2c = (b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: H2C \r\n"
           b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    assert parse_request_head(h2c)[4] == b"h2c"
    chunked = b"\r\nPUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse_request_head(chunked)[6] == CHUNKED  # repeated fields are one list


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_a_request_head_is_read_strictly(bad: bytes) -> None:
    with pytest.raises(Refusal):
        parse_request_head(bad)


def test_a_response_head_is_read_leniently() -> None:
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"GET") == (200, "OK", 5, True)
    assert parse_response_head(b"HTTP/1.0 404\nContent-Length : 3\n\n", b"GET") == (404, "", 3, False)
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD") == (200, "OK", 0, True)
    long_reason = b"HTTP/1.1 500 " + b"x" * 200 + b"\r\nConnection: close\r\n\r\n"
    assert parse_response_head(long_reason, b"GET") == (500, "x" * MAX_REASON, UNTIL_CLOSE, False)
    assert parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n", b"GET") is None


def test_head_ends_and_request_line_guesses() -> None:
    assert find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody", 0) == 19
    assert find_head_end(b"HTTP/1.1 200 OK\n\nbody", 0) == 17
    assert find_head_end(b"HTTP/1.1 200 OK\r\n", 0) == -1
    assert request_line_guess(b"\r\nDELETE /x HTTP/1.1\r\nbad") == (b"DELETE", b"/x")
    assert request_line_guess(b"\x16\x03\x01 garbage") is None


def test_the_memo_stays_bounded() -> None:
    memo: dict[bytes, object] = {}
    remember(memo, b"x" * (MEMO_HEAD_BYTES + 1), 1)
    assert memo == {}  # long heads are parsed every time
    for i in range(MEMO_ENTRIES + 10):
        remember(memo, b"%d" % i, i)
    assert 0 < len(memo) <= MEMO_ENTRIES


def test_simple_response_is_well_framed() -> None:
    response = simple_response(502, "Bad Gateway", "nope\n")
    tracker = ExchangeTracker()
    tracker.feed_request(GET, 1.0)
    [ex] = tracker.feed_response(response, 2.0)
    assert (ex.status, ex.bytes_out) == (502, len(response)) and tracker.must_close
