"""The HTTP/1.x framing tracker, as pure code on raw byte constants.

Every case is fed whole, split at every byte boundary, and in random chunks
(hypothesis); the forwarded bytes and the exchanges must not depend on how
the bytes were cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.exchange import Exchange
from sidecar.http1.heads import response_memo
from sidecar.http1.tracker import ExchangeTracker

Summary = tuple[str, str, int, int, int, "str | None"]  # method, target, status, bytes_in, bytes_out, error


def summary(ex: Exchange) -> Summary:
    return (ex.method.decode(), ex.target.decode(), ex.status, ex.bytes_in, ex.bytes_out, ex.error)


@dataclass
class Run:
    forwarded: bytes
    exchanges: list[Summary]
    refused: Summary | None
    must_close: bool
    tracker: ExchangeTracker


def run(requests: Sequence[bytes], responses: Sequence[bytes], end: str = "upstream",
        max_head: int = 65536) -> Run:
    """Feed request chunks, then response chunks (each 'written' at once), then close with `end`."""
    tracker = ExchangeTracker(max_head)
    forwarded = b""
    clock = 0.0
    for chunk in requests:
        clock += 1
        forwarded += tracker.feed_request(chunk, clock)
        if tracker.refused is not None:
            break
    refused = summary(tracker.refused) if tracker.refused is not None else None
    for chunk in responses:
        clock += 1
        done = tracker.feed_response(chunk, clock)
        tracker.sent(done, clock + 0.5)
    must_close = tracker.must_close
    if end == "upstream":
        tracker.upstream_eof(clock + 1)
    tracker.close(end, clock + 1)
    exchanges = [summary(ex) for ex in tracker.take_finished() if not ex.refused]
    return Run(forwarded, exchanges, refused, must_close, tracker)


def splits(data: bytes) -> list[list[bytes]]:
    """The data whole and cut once at every position."""
    return [[data]] + [[data[:i], data[i:]] for i in range(1, len(data))]


def every_way(requests: bytes, responses: bytes, end: str = "upstream") -> Run:
    """Run every single split of both streams; all must agree with the unsplit run, which is returned."""
    whole = run([requests], [responses], end)
    for parts in splits(requests):
        got = run(parts, [responses], end)
        assert (got.forwarded, got.exchanges, got.refused) == (whole.forwarded, whole.exchanges, whole.refused), parts
    for parts in splits(responses):
        got = run([requests], parts, end)
        assert (got.exchanges, got.must_close) == (whole.exchanges, whole.must_close), parts
    bytewise = run([requests[i:i + 1] for i in range(len(requests))],
                   [responses[i:i + 1] for i in range(len(responses))], end)
    assert (bytewise.forwarded, bytewise.exchanges) == (whole.forwarded, whole.exchanges)
    return whole


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True) if b > a]


# --- byte constants -------------------------------------------------------------

GET = b"GET /users/42?token=secret HTTP/1.1\r\nHost: app\r\nUser-Agent: kube-probe/1.29\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
# A body that looks like HTTP must stay a body (the article's sidecar crashed on it).
POST = (b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 38\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\n\r\n!")
ECHO = b"HTTP/1.1 201 Created\r\ncontent-length: 38\r\n\r\nHTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\n\r\n!"
CHUNKED_POST = (b"POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;name=value\r\nhello\r\n"
                b"A ; ext\r\n0123456789\r\n"
                b"0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n")
CHUNKED_OK = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
              b"4\r\nwiki\r\n"
              b"10;a=b\r\n0123456789abcdef\r\n"
              b"0\r\nTrailer-Field: x\r\n\r\n")


def test_one_get_and_its_response() -> None:
    got = every_way(GET, OK)
    assert got.forwarded == GET
    assert got.exchanges == [("GET", "/users/42?token=secret", 200, len(GET), len(OK), None)]
    assert not got.must_close


def test_exchange_times_and_user_agent() -> None:
    tracker = ExchangeTracker()
    assert tracker.feed_request(GET[:10], 1.0) == b""
    assert tracker.head_started == 1.0
    assert tracker.feed_request(GET[10:], 2.0) == GET
    assert tracker.head_started is None
    assert tracker.feed_response(OK[:3], 3.0) == []
    [done] = tracker.feed_response(OK[3:], 4.0)
    tracker.sent([done], 5.0)
    [ex] = tracker.take_finished()
    assert (ex.t_start, ex.t_first, ex.t_end) == (1.0, 3.0, 5.0)
    assert ex.user_agent.startswith(b"kube-probe/")
    assert tracker.live == 0


def test_a_body_that_looks_like_http_is_a_body() -> None:
    got = every_way(POST, ECHO)
    assert got.exchanges == [("POST", "/echo", 201, len(POST), len(ECHO), None)]


def test_chunked_both_ways_with_extensions_and_trailers() -> None:
    got = every_way(CHUNKED_POST, CHUNKED_OK)
    assert got.forwarded == CHUNKED_POST
    assert got.exchanges == [("POST", "/upload", 200, len(CHUNKED_POST), len(CHUNKED_OK), None)]


def test_pipelined_requests_are_answered_in_order() -> None:
    requests = GET + b"HEAD /h HTTP/1.1\r\nHost: app\r\n\r\n" + POST + CHUNKED_POST
    head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nTransfer-Encoding: chunked\r\n\r\n"
    responses = OK + head_ok + ECHO + CHUNKED_OK
    got = every_way(requests, responses)
    assert got.forwarded == requests
    assert [(m, s, o) for m, _t, s, _i, o, _e in got.exchanges] == [
        ("GET", 200, len(OK)), ("HEAD", 200, len(head_ok)), ("POST", 201, len(ECHO)), ("POST", 200, len(CHUNKED_OK))]


def test_no_body_for_204_and_304_whatever_the_headers_say() -> None:
    requests = GET + GET + GET
    no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"x\"\r\n\r\n"
    got = every_way(requests, no_content + not_modified + OK)
    assert [s for _m, _t, s, *_ in got.exchanges] == [204, 304, 200]


def test_interim_responses_belong_to_the_exchange() -> None:
    request = (b"PUT /file HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n" + b"data")
    responses = (b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                 + b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    got = every_way(request, responses)
    assert got.exchanges == [("PUT", "/file", 201, len(request), len(responses), None)]


def test_http10_close_delimited_response_ends_with_the_close() -> None:
    request = b"GET /old HTTP/1.0\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    got = every_way(request, response)
    assert got.exchanges == [("GET", "/old", 200, len(request), len(response), None)]
    assert got.tracker.feed_request(b"GET /more HTTP/1.0\r\n\r\n", 99.0) == b""  # not persistent


def test_http10_keep_alive() -> None:
    request = b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    got = every_way(request * 2, response * 2)
    assert len(got.exchanges) == 2 and all(e[2] == 200 and e[5] is None for e in got.exchanges)
    assert not got.must_close


def test_http11_response_without_length_reads_until_close() -> None:
    response = b"HTTP/1.1 200 OK\r\n\r\nstreamed body"
    got = every_way(GET, response)
    assert got.exchanges[0][2:] == (200, len(GET), len(response), None)
    tracker = ExchangeTracker()
    tracker.feed_request(GET, 1.0)
    assert tracker.feed_response(response, 2.0) == []  # only the close can end it


@pytest.mark.parametrize("request_close", [True, False])
def test_connection_close_ends_the_connection(request_close: bool) -> None:
    first = b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\n" if request_close else b"GET /1 HTTP/1.1\r\n\r\n"
    answer = OK if request_close else b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    got = every_way(first + b"GET /2 HTTP/1.1\r\n\r\n", answer, end="done")
    assert got.must_close
    # The request behind a closing one is never answered and never reported: the client retries it.
    assert [(m, t, s, e) for m, t, s, _i, _o, e in got.exchanges] == [("GET", "/1", 200, None)]
    assert got.forwarded == (first if request_close else first + b"GET /2 HTTP/1.1\r\n\r\n")


def test_upgrade_turns_the_connection_into_one_tunnelled_exchange() -> None:
    request = (b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    frames_in, frames_out = b"\x81\x85\x00\x00\x00\x00hello" + b"GET / HTTP/1.1\r\n\r\n", b"\x81\x02hi"
    got = every_way(request, switch)
    assert got.exchanges == [("GET", "/ws", 101, len(request), len(switch), None)]
    tracker = ExchangeTracker()
    tracker.feed_request(request, 1.0)
    assert tracker.feed_response(switch, 2.0) == []  # not over: the tunnel is part of it
    assert tracker.tunnel
    assert tracker.feed_request(frames_in, 3.0) == frames_in  # not HTTP any more
    tracker.feed_response(frames_out, 4.0)
    tracker.close("client", 5.0)
    [ex] = tracker.take_finished()
    assert (ex.status, ex.error, ex.t_end) == (101, None, 5.0)
    assert (ex.bytes_in, ex.bytes_out) == (len(request) + len(frames_in), len(switch) + len(frames_out))


def test_declined_upgrade_goes_on_as_http() -> None:
    request = b"GET /h2c HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n"
    got = every_way(request, OK)
    assert got.exchanges[0][2] == 200
    tracker = got.tracker
    tracker2 = ExchangeTracker()
    tracker2.feed_request(request, 1.0)
    tracker2.sent(tracker2.feed_response(OK, 2.0), 2.0)
    assert tracker2.feed_request(GET, 3.0) == GET
    assert len(tracker2.feed_response(OK, 4.0)) == 1
    del tracker


def test_connect_is_refused_unless_the_app_is_a_proxy() -> None:
    """After a 2xx to CONNECT the rest is one opaque sample: an app still speaking HTTP there would hide it."""
    request = b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"
    tracker = ExchangeTracker()
    assert tracker.feed_request(request + GET, 1.0) == b""  # nothing reaches the app
    ex = tracker.refused
    assert ex is not None and ex.status == 405 and ex.method == b"CONNECT" and "--allow-connect" in ex.reason
    again = ExchangeTracker()  # the refused head was not remembered: refused every time
    assert again.feed_request(request, 1.0) == b"" and again.refused is not None


def test_connect_tunnels_after_2xx() -> None:
    request = b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"
    tracker = ExchangeTracker(allow_connect=True)
    assert tracker.feed_request(request + b"\x00\x01raw", 1.0) == request  # the rest waits for the answer
    assert tracker.awaiting_upgrade
    tracker.feed_response(b"HTTP/1.1 200 Connection established\r\n\r\n\x05", 2.0)
    assert tracker.tunnel and tracker.take_released() == b"\x00\x01raw"
    tracker.close("upstream", 3.0)
    [ex] = tracker.take_finished()
    assert (ex.method, ex.status, ex.error, ex.bytes_in) == (b"CONNECT", 200, None, len(request) + 5)


UPGRADE = b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def test_bytes_behind_an_upgrade_wait_for_its_answer() -> None:
    behind = b"\x81\x80early frame"
    for switch in (True, False):
        tracker = ExchangeTracker()
        assert tracker.feed_request(UPGRADE + behind[:4], 1.0) == UPGRADE
        assert tracker.feed_request(behind[4:], 2.0) == b""
        answer = b"HTTP/1.1 101 Switching Protocols\r\n\r\n" if switch else OK
        tracker.feed_response(answer, 3.0)
        if switch:  # the new protocol's bytes, all of them, in order
            assert tracker.take_released() == behind and tracker.tunnel
        else:  # HTTP goes on: the held bytes are framed like any others, and these are not HTTP
            assert tracker.take_released() == b"" and tracker.refused is not None


def test_requests_behind_a_declined_upgrade_are_framed_and_checked() -> None:
    smuggled = b"POST /smuggled HTTP/1.1\nHost: a\n\n"
    for behind, released, refused in ((GET, GET, False), (GET + smuggled, GET, True)):
        tracker = ExchangeTracker()
        assert tracker.feed_request(UPGRADE + behind, 1.0) == UPGRADE
        tracker.sent(tracker.feed_response(OK, 2.0), 2.5)  # declined: a plain 200
        assert tracker.take_released() == released
        assert (tracker.refused is not None) == refused
        tracker.sent(tracker.feed_response(OK, 3.0), 3.5)
        assert [ex.target for ex in tracker.take_finished()] == [b"/chat", b"/users/42?token=secret"]


def test_empty_lines_before_a_request_are_passed_over() -> None:
    requests = POST + b"\r\n" + GET  # some clients add CRLF after a body
    got = every_way(requests, ECHO + OK)
    assert got.forwarded == requests
    assert [e[2] for e in got.exchanges] == [201, 200]


def test_an_early_response_waits_for_the_rest_of_the_request() -> None:
    tracker = ExchangeTracker()
    head = b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    tracker.feed_request(head + b"12345", 1.0)
    early = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"
    tracker.sent(tracker.feed_response(early, 2.0), 3.0)
    assert tracker.take_finished() == []  # the body is still coming
    tracker.feed_request(b"67890", 4.0)
    [ex] = tracker.take_finished()
    assert (ex.status, ex.bytes_in, ex.t_end) == (413, len(head) + 10, 3.0)


def test_a_response_nobody_asked_for_is_not_reported() -> None:
    tracker = ExchangeTracker()
    timeout = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert tracker.feed_response(timeout, 1.0) == []
    assert tracker.must_close
    tracker.close("done", 2.0)
    assert tracker.take_finished() == [] and tracker.live == 0


def test_lenient_response_heads() -> None:
    bare_lf = b"HTTP/1.1 200\nContent-Length : 2\n\nok"
    got = every_way(GET * 2, bare_lf + OK)
    assert [(e[2], e[4]) for e in got.exchanges] == [(200, len(bare_lf)), (200, len(OK))]


def test_a_response_that_is_not_http_passes_until_close() -> None:
    response = b"SSH-2.0-OpenSSH_9.6\r\n\r\nmore"
    got = every_way(GET, response)
    assert got.exchanges == [("GET", "/users/42?token=secret", 0, len(GET), len(response), "upstream_reset")]


def test_broken_chunked_response_passes_until_close() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk"
    got = every_way(GET + GET, response)
    # The second request was never answered: the app's close cut it off.
    assert got.exchanges == [("GET", "/users/42?token=secret", 200, len(GET), len(response), None),
                             ("GET", "/users/42?token=secret", 0, len(GET), 0, "upstream_reset")]


# --- refusals: what must never reach the app ----------------------------------------

BAD_REQUESTS = {
    "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n",
    "http2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "cl and te": b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "conflicting cl": b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "conflicting cl list": b"POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\nabcde",
    "cl not a number": b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd",
    "cl hex": b"POST / HTTP/1.1\r\nContent-Length: 0x4\r\n\r\nabcd",
    "te not chunked": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
    "te chunked twice": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te in http/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
    "bare lf": b"GET / HTTP/1.1\nHost: x\n\n\r\n\r\n",
    "bare cr": b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    "nul in value": b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    "no version": b"GET /\r\n\r\n",
    "two spaces": b"GET  / HTTP/1.1\r\n\r\n",
    "http/1.2": b"GET / HTTP/1.2\r\n\r\n",
}
BAD_CHUNKS = {
    "chunk size not hex": b"zz\r\nhi\r\n0\r\n\r\n",
    "chunk size too long": b"1" * 20 + b"\r\n",
    "no crlf after data": b"2\r\nhiXX0\r\n\r\n",
    "bare lf in chunk line": b"2\nhi\r\n0\r\n\r\n",
    "bad trailer": b"0\r\nbad trailer\r\n\r\n",
}
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_unframeable_heads_are_refused_and_never_forwarded(name: str) -> None:
    data = BAD_REQUESTS[name]
    for parts in [*splits(data), [data[i:i + 1] for i in range(len(data))]]:
        got = run(parts, [])
        assert got.refused is not None, parts
        assert got.refused[2] == 400 and got.refused[5] == "bad_request"
        assert got.forwarded == b"", parts


@pytest.mark.parametrize("name", sorted(BAD_CHUNKS))
def test_bad_chunked_bodies_are_refused(name: str) -> None:
    data = CHUNKED_HEAD + BAD_CHUNKS[name]
    for parts in splits(data):
        got = run(parts, [])
        assert got.refused is not None and got.refused[2] == 400, parts
        assert data.startswith(got.forwarded) and len(got.forwarded) < len(data)


def test_a_good_request_before_a_bad_one_still_goes_through() -> None:
    bad = BAD_REQUESTS["cl and te"]
    tracker = ExchangeTracker()
    assert tracker.feed_request(GET + bad, 1.0) == GET
    assert tracker.refused is not None
    assert tracker.refusal_ready() == "wait"  # the app still owes GET its response
    tracker.sent(tracker.feed_response(OK, 2.0), 2.0)
    assert tracker.refusal_ready() == "send"
    assert tracker.feed_request(b"more", 3.0) == b""  # nothing more is read into the app


def test_garbage_is_refused_before_the_head_ends() -> None:
    tracker = ExchangeTracker()
    assert tracker.feed_request(b"\x16\x03\x01", 1.0) == b""
    assert tracker.refused is not None and tracker.refused.status == 400


def test_oversized_heads_get_431() -> None:
    head = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n"
    for parts in ([head], [head[:50], head[50:]], [head[:150]]):
        tracker = ExchangeTracker(max_head=100)
        for part in parts:
            assert tracker.feed_request(part, 1.0) == b""
        assert tracker.refused is not None and tracker.refused.status == 431
        assert tracker.refused.method == b"GET"


def test_a_remembered_head_is_still_too_large_for_a_smaller_limit() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 300 + b"\r\n\r\n"
    assert ExchangeTracker().feed_request(head, 1.0) == head  # now remembered
    small = ExchangeTracker(max_head=100)
    assert small.feed_request(head, 1.0) == b""
    assert small.refused is not None and small.refused.status == 431


def test_a_refused_partial_head_still_names_its_request() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(b"GET /x HTTP/1.1\r\nX: 1\nY", 1.0)
    assert tracker.refused is not None
    assert (tracker.refused.method, tracker.refused.target) == (b"GET", b"/x")


# --- closing ---------------------------------------------------------------------------


def test_close_reports_exchanges_cut_short() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(GET + GET + b"GET /partial", 1.0)
    tracker.feed_response(OK[:10], 2.0)
    tracker.close("upstream", 3.0)
    exchanges = tracker.take_finished()
    # The partial head never became a request: dropped, not an error.
    assert [(ex.status, ex.error, ex.t_end) for ex in exchanges] == [(0, "upstream_reset", 3.0)] * 2
    tracker = ExchangeTracker()
    tracker.feed_request(GET, 1.0)
    tracker.feed_response(OK[:-2], 2.0)
    tracker.close("client", 3.0)
    [ex] = tracker.take_finished()
    assert (ex.status, ex.error, ex.t_first) == (200, "client_closed", 2.0)


def test_close_delimited_response_is_complete_at_eof() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(GET, 1.0)
    tracker.feed_response(b"HTTP/1.1 200 OK\r\n\r\nbody", 2.0)
    tracker.upstream_eof(3.0)
    tracker.close("upstream", 3.0)
    [ex] = tracker.take_finished()
    assert (ex.status, ex.error, ex.t_end) == (200, None, 3.0)


def test_conclude_answers_a_request_with_our_own_response() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial", 1.0)
    ex = tracker.first_unanswered()
    assert ex is not None
    tracker.conclude(ex, 502, "Bad Gateway", "upstream_unavailable", 120, 2.0)
    [done] = tracker.take_finished()
    assert (done.status, done.error, done.bytes_out, done.t_first, done.t_end) == (
        502, "upstream_unavailable", 120, 2.0, 2.0)
    assert tracker.live == 0


# --- hypothesis: random cuts of random pipelines ---------------------------------------

GOOD = [(GET, OK), (POST, ECHO), (CHUNKED_POST, CHUNKED_OK),
        (b"HEAD / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
        (b"GET /e HTTP/1.1\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(GOOD))), min_size=1, max_size=6),
       st.lists(st.integers(0, 4000), max_size=12), st.lists(st.integers(0, 4000), max_size=12))
def test_random_cuts_of_pipelines(order: list[int], request_cuts: list[int], response_cuts: list[int]) -> None:
    requests = b"".join(GOOD[i][0] for i in order)
    responses = b"".join(GOOD[i][1] for i in order)
    whole = run([requests], [responses])
    got = run(cut(requests, request_cuts), cut(responses, response_cuts))
    assert got.forwarded == requests == whole.forwarded
    assert got.exchanges == whole.exchanges
    assert [(e[3], e[4]) for e in got.exchanges] == [(len(GOOD[i][0]), len(GOOD[i][1])) for i in order]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_never_raise_and_only_a_prefix_goes_on(data: bytes, cuts: list[int]) -> None:
    tracker = ExchangeTracker(max_head=200)
    forwarded = b""
    for i, part in enumerate(cut(data, cuts)):
        forwarded += tracker.feed_request(part, float(i))
        tracker.feed_response(part, float(i))
    assert data.startswith(forwarded)
    tracker.close("client", 99.0)
    assert tracker.live == 0


# --- remembered heads take a shortcut that must not change anything ------------------------

UPGRADE = b"GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
SHORTCUT_CASES = {
    "keep-alive": ([GET], [OK]),
    "close": ([GET], [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"]),
    "http/1.0 request": ([b"GET / HTTP/1.0\r\n\r\n"], [OK]),
    "declined upgrade": ([UPGRADE + GET], [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", OK]),
    "interim then final": ([GET], [b"HTTP/1.1 100 Continue\r\n\r\n", OK]),
    "two in one chunk": ([GET + GET], [OK + OK]),
}


@pytest.mark.parametrize("name", sorted(SHORTCUT_CASES))
def test_a_remembered_response_head_frames_like_a_fresh_one(name: str) -> None:
    requests, responses = SHORTCUT_CASES[name]
    response_memo.clear()
    fresh = run(requests, responses)
    assert response_memo  # the heads are remembered now
    again = run(requests, responses)
    assert (again.forwarded, again.exchanges, again.must_close) == (fresh.forwarded, fresh.exchanges, fresh.must_close)
    assert all(e[2] >= 200 for e in fresh.exchanges)


def test_a_head_response_never_takes_a_remembered_length() -> None:
    head17 = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n"
    no_content = b"HTTP/1.1 204 \r\n\r\n"  # 17 bytes: just what a remembered length would swallow
    requests = b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"
    got = run([requests], [head17 + b"x" * 17, head17 + no_content])
    assert [(e[1], e[2], e[4]) for e in got.exchanges] == [("/a", 200, 39 + 17), ("/b", 200, 39), ("/c", 204, 17)]
