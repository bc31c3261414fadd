"""`SidecarServer` end to end: real sockets on 127.0.0.1, raw backends and raw clients.

Each case checks the bytes the client gets (the same as going direct), the
bytes the app gets, and the samples recorded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

from app.core.sample import Record
from app.core.wire import Sample
from app.options import SidecarConfig
from sidecar import proxy as proxy_module
from sidecar.proxy import SidecarServer
from tests.proxy_support import (
    Peer,
    RawBackend,
    Sidecar,
    answer,
    eventually,
    in_thread,
    listening_but_never_accepting,
    read_all,
    talk,
)

GET = (b"GET /users/42?token=abc HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer s3cret\r\n"
       b"Cookie: session=s3cret\r\n\r\n")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
POST = b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 20\r\n\r\nHTTP/1.1 200 OK\r\n\r\nX"
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 20\r\n\r\nHTTP/1.1 200 OK\r\n\r\nX"
CHUNKED_POST = (b"POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n")
CHUNKED_OK = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4\r\nwiki\r\n10;a=b\r\n0123456789abcdef\r\n0\r\nTrailer-Field: x\r\n\r\n")


class Closer:
    def __init__(self, *steps: Callable[[], object]) -> None:
        self.steps = steps

    def close(self) -> None:
        for step in self.steps:
            step()


@pytest.fixture
def closing(io_loop: Any) -> Iterator[list[Any]]:
    """Things with .close() to close at the end of the test; then the loop runs a moment so that
    the tasks those closes end (pumps, lingering clients) finish on it instead of dying pending."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close()
    io_loop.run_sync(lambda: asyncio.sleep(0.05))


@pytest.fixture
def backend(closing: list[Any]) -> Callable[..., RawBackend]:
    def start(handler: Callable[[Peer], None], port: int = 0) -> RawBackend:
        server = RawBackend(handler, port)
        closing.append(server)
        return server
    return start


@pytest.fixture
def sidecar(closing: list[Any]) -> Callable[..., Sidecar]:
    def start(target_port: int, **settings: Any) -> Sidecar:
        proxy = Sidecar(target_port, **settings)
        closing.append(proxy)
        return proxy
    return start


async def direct_and_proxied(backend: RawBackend, proxy: Sidecar, data: bytes, **kwargs: Any) -> bytes:
    """What a client gets going direct and through the sidecar; they must be the same."""
    direct = await in_thread(talk, backend.port, data, **kwargs)
    proxied = await in_thread(talk, proxy.port, data, **kwargs)
    assert proxied == direct
    assert backend.peers[-1].received == backend.peers[0].received  # the app got the same bytes both ways
    return proxied


@pytest.mark.gen_test(timeout=10)
async def test_a_closed_connection_is_freed_without_the_garbage_collector(io_loop: Any, backend: Any,
                                                                          sidecar: Any) -> None:
    """The sidecar runs the collector's young pass only every 20,000 allocations (sidecar.main): a closed
    connection must not wait for it, so nothing of it refers back to it once both sides are lost."""
    app = backend(answer(len(GET), OK, then="wait"))
    proxy = sidecar(app.port)
    gc.collect()
    gc.disable()
    try:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.sendall(GET)
        assert await in_thread(read_all, client, len(OK)) == OK
        await proxy.wait_samples(1)
        [conn] = proxy.server._connections
        kind = type(conn)
        del conn
        client.close()
        await proxy.settled()
        await asyncio.sleep(0.1)  # both transports' connection_lost
        left = [obj for obj in gc.get_objects() if type(obj) is kind]
        assert not left, [type(r).__name__ for r in gc.get_referrers(*left)]
    finally:
        gc.enable()


# --- one exchange, many exchanges --------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_one_exchange_passes_unchanged_and_makes_one_sample(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK))
    proxy = sidecar(app.port)
    before = time.time() * 1000
    assert await direct_and_proxied(app, proxy, GET) == OK
    [sample] = await proxy.wait_samples(1)
    assert sample["endpoint"] == "/users/42" and sample["route"] == "/users/{id}"
    assert (sample["method"], sample["response"]) == ("GET", {"status": 200, "message": "OK"})
    assert (sample["bytes_in"], sample["bytes_out"]) == (len(GET), len(OK))
    assert (sample["file"], sample["probe"], sample["error"]) == (False, False, None)
    assert sample["ttfb"] is not None and 0 < sample["ttfb"] <= sample["time"] < 1000
    assert before - 5 <= sample["started"] <= time.time() * 1000
    assert "s3cret" not in repr(proxy.samples) and "token" not in repr(proxy.samples)
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_keep_alive_gives_one_sample_per_request(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK, times=3, then="wait"))
    proxy = sidecar(app.port)

    def three_on_one_connection() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            got = []
            for _ in range(3):
                sock.sendall(GET)
                got.append(read_all(sock, len(OK)))
                time.sleep(0.2)
            return got

    assert await in_thread(three_on_one_connection) == [OK] * 3
    samples = await proxy.wait_samples(3)
    assert [s["response"]["status"] for s in samples] == [200] * 3
    # Each exchange is timed on its own: none includes the pauses between them. (The pauses are long
    # enough that load on the machine does not make an exchange itself take as long: 20 ms did once.)
    assert all(s["time"] < 200 for s in samples)
    assert samples[0]["started"] < samples[1]["started"] < samples[2]["started"]
    assert len(app.peers) == 1


@pytest.mark.gen_test(timeout=10)
async def test_pipelined_requests_are_answered_in_order(io_loop: Any, backend: Any, sidecar: Any) -> None:
    head = b"HEAD /h HTTP/1.1\r\n\r\n"
    requests = GET + head + POST + CHUNKED_POST
    head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    responses = OK + head_ok + CREATED + CHUNKED_OK
    app = backend(answer(len(requests), responses))
    proxy = sidecar(app.port)
    assert await direct_and_proxied(app, proxy, requests) == responses
    samples = await proxy.wait_samples(4)
    assert [(s["method"], s["endpoint"], s["response"]["status"], s["bytes_in"], s["bytes_out"]) for s in samples] == [
        ("GET", "/users/42", 200, len(GET), len(OK)), ("HEAD", "/h", 200, len(head), len(head_ok)),
        ("POST", "/echo", 201, len(POST), len(CREATED)), ("POST", "/upload", 200, len(CHUNKED_POST), len(CHUNKED_OK))]


@pytest.mark.gen_test(timeout=10)
async def test_no_body_after_head_204_and_304(io_loop: Any, backend: Any, sidecar: Any) -> None:
    requests = b"HEAD / HTTP/1.1\r\n\r\n" + GET + GET + GET
    responses = (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
                 + b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
                 + b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n" + OK)
    app = backend(answer(len(requests), responses))
    proxy = sidecar(app.port)
    assert await direct_and_proxied(app, proxy, requests) == responses
    samples = await proxy.wait_samples(4)
    assert [s["response"]["status"] for s in samples] == [200, 204, 304, 200]
    assert all(s["error"] is None for s in samples)


@pytest.mark.gen_test(timeout=10)
async def test_expect_100_continue(io_loop: Any, backend: Any, sidecar: Any) -> None:
    head = b"PUT /files/report.pdf HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    cont, created = b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"

    def app_side(peer: Peer) -> None:
        peer.read_until(len(head))
        time.sleep(0.05)
        peer.send(cont)
        peer.read_until(len(head) + 4)
        peer.send(created)
        peer.read_until_close()

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head)
            got = read_all(sock, len(cont))
            sock.sendall(b"data")
            return got + read_all(sock, len(created))

    app = backend(app_side)
    proxy = sidecar(app.port)
    assert await in_thread(client, app.port) == await in_thread(client, proxy.port) == cont + created
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["file"]) == (201, True)
    assert sample["bytes_out"] == len(cont + created)
    assert sample["ttfb"] is not None and sample["ttfb"] >= 40  # the 100 came after 50 ms


@pytest.mark.gen_test(timeout=10)
async def test_body_that_looks_like_http_and_chunked_both_ways(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(POST + CHUNKED_POST), CREATED + CHUNKED_OK))
    proxy = sidecar(app.port)
    assert await direct_and_proxied(app, proxy, POST + CHUNKED_POST) == CREATED + CHUNKED_OK
    assert [s["response"]["status"] for s in await proxy.wait_samples(2)] == [201, 200]


# --- connections ending -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_http10_response_delimited_by_close(io_loop: Any, backend: Any, sidecar: Any) -> None:
    request = b"GET /old HTTP/1.0\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 100_000
    app = backend(answer(len(request), response))
    proxy = sidecar(app.port)
    assert await direct_and_proxied(app, proxy, request) == response
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["bytes_out"], sample["error"]) == (200, len(response), None)


@pytest.mark.gen_test(timeout=10)
async def test_a_client_that_shuts_its_sending_side_still_gets_its_answers(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    def app_side(peer: Peer) -> None:  # answers slowly, after the client has shut its side
        if peer.read_until(2 * len(GET)):
            time.sleep(0.2)
            peer.send(OK + OK)
        peer.read_until_close()

    app = backend(app_side)
    proxy = sidecar(app.port)
    assert await in_thread(talk, proxy.port, GET + GET, half_close=True) == OK + OK
    samples = await proxy.wait_samples(2)
    assert [(s["response"]["status"], s["error"]) for s in samples] == [(200, None), (200, None)]
    await eventually(lambda: app.peers[0].closed_by_peer.is_set(), what="the app saw the end of file")
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("who", ["client", "app"])
async def test_connection_close_is_honoured(io_loop: Any, backend: Any, sidecar: Any, who: str) -> None:
    """The app keeps its socket open: the sidecar must still close the client's (the article's client hung)."""
    request = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" if who == "client" else b"GET / HTTP/1.1\r\n\r\n"
    response = OK if who == "client" else b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    app = backend(answer(len(request), response, then="wait"))
    proxy = sidecar(app.port)
    started = time.monotonic()
    assert await in_thread(talk, proxy.port, request + b"GET /never HTTP/1.1\r\n\r\n") == response
    assert time.monotonic() - started < 2
    await eventually(lambda: app.peers[0].closed_by_peer.is_set(), what="the app's connection closed")
    [sample] = await proxy.wait_samples(1)
    assert sample["endpoint"] == "/"
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_upstream_closing_mid_response(io_loop: Any, backend: Any, sidecar: Any) -> None:
    cut_short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."
    app = backend(answer(len(GET), cut_short))
    proxy = sidecar(app.port)
    assert await direct_and_proxied(app, proxy, GET) == cut_short
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (200, "upstream_reset")
    assert sample["bytes_out"] == len(cut_short)
    assert proxy.counters.upstream_errors["upstream_reset"] == 1


@pytest.mark.gen_test(timeout=10)
async def test_client_gone_mid_exchange(io_loop: Any, backend: Any, sidecar: Any) -> None:
    def slow_app(peer: Peer) -> None:
        peer.read_until(len(GET))
        peer.read_until_close()  # never answers; sees the sidecar hang up

    app = backend(slow_app)
    proxy = sidecar(app.port)

    def impatient() -> None:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(GET)
            time.sleep(0.1)

    await in_thread(impatient)
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"], sample["ttfb"]) == (0, "client_closed", None)
    assert 90 <= sample["time"] < 1000
    await eventually(lambda: app.peers[0].closed_by_peer.is_set(), what="the app's connection closed")
    assert proxy.counters.client_closed == 1
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_client_gone_mid_download(io_loop: Any, backend: Any, sidecar: Any) -> None:
    size = 32 << 20

    def big_app(peer: Peer) -> None:
        peer.read_until(len(GET))
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * 65536
        for _ in range(size // len(block)):
            peer.send(block)

    app = backend(big_app)
    proxy = sidecar(app.port)
    assert len(await in_thread(talk, proxy.port, GET, until=100_000)) >= 100_000  # then hangs up
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (200, "client_closed")
    assert 100_000 <= sample["bytes_out"] < size
    await eventually(app.peers[0].handled.is_set, what="the app's sending cut off")
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_websocket_is_one_exchange(io_loop: Any, sidecar: Any, closing: list[Any]) -> None:
    class Echo(WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message)

    sock, port = bind_unused_port()
    server = HTTPServer(Application([(r"/ws", Echo)]))
    server.add_sockets([sock])
    closing.append(Closer(server.stop))
    proxy = sidecar(port)
    ws = await websocket_connect(f"ws://127.0.0.1:{proxy.port}/ws")
    for text in ("one", "two", "three" * 1000):
        await ws.write_message(text)
        assert await ws.read_message() == text
    assert proxy.samples == []  # not over while the tunnel is open
    ws.close()
    [sample] = await proxy.wait_samples(1)
    assert (sample["endpoint"], sample["response"]["status"], sample["error"]) == ("/ws", 101, None)
    assert sample["bytes_out"] > 5000 and sample["bytes_in"] > 5000
    await proxy.settled()


UPGRADE = b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("smuggle", [False, True])
async def test_requests_behind_a_declined_upgrade_are_framed(
        io_loop: Any, backend: Any, sidecar: Any, smuggle: bool) -> None:
    behind = b"POST /smuggled HTTP/1.1\nHost: a\n\n" if smuggle else GET

    def declining_app(peer: Peer) -> None:
        peer.read_until(len(UPGRADE))
        peer.send(OK)  # no switch: HTTP goes on
        if peer.read_until(len(UPGRADE) + len(GET)):
            peer.send(OK)
        peer.read_until_close()

    app = backend(declining_app)
    proxy = sidecar(app.port)
    got = await in_thread(talk, proxy.port, UPGRADE + behind, until=2 * len(OK), timeout=2)
    samples = await proxy.wait_samples(2)
    if smuggle:
        assert got.startswith(OK + b"HTTP/1.1 400 Bad Request\r\n")
        assert bytes(app.peers[0].received) == UPGRADE  # the smuggled request never reached the app
        assert [(s["endpoint"], s["error"]) for s in samples] == [("/chat", None), ("/smuggled", "bad_request")]
    else:
        assert got == OK + OK
        assert bytes(app.peers[0].received) == UPGRADE + GET
        assert [(s["endpoint"], s["error"]) for s in samples] == [("/chat", None), ("/users/42", None)]


@pytest.mark.gen_test(timeout=10)
async def test_bytes_sent_early_behind_an_upgrade_reach_the_new_protocol(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"

    def switching_app(peer: Peer) -> None:
        peer.read_until(len(UPGRADE))
        time.sleep(0.1)  # the early bytes are at the sidecar by now
        peer.send(switch)
        peer.read_until(len(UPGRADE) + 6)
        peer.send(b"pong!!")

    app = backend(switching_app)
    proxy = sidecar(app.port)
    assert await in_thread(talk, proxy.port, UPGRADE + b"ping!!") == switch + b"pong!!"
    assert bytes(app.peers[0].received) == UPGRADE + b"ping!!"
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["bytes_in"], sample["bytes_out"]) == (
        101, len(UPGRADE) + 6, len(switch) + 6)


# --- the app unreachable -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_target_refusing_gives_502_at_once(io_loop: Any, sidecar: Any) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        proxy = sidecar(port)
        started = time.monotonic()
        got = await in_thread(talk, proxy.port, GET)
    assert time.monotonic() - started < 1
    assert got.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and b"Connection: close" in got
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (502, "upstream_unavailable")
    assert sample["bytes_out"] == len(got)
    assert proxy.counters.upstream_errors["upstream_unavailable"] == 1
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_connect_timeout_gives_504(io_loop: Any, sidecar: Any) -> None:
    with listening_but_never_accepting() as port:
        proxy = sidecar(port, connect_timeout=0.3)
        started = time.monotonic()
        got = await in_thread(talk, proxy.port, GET)
        waited = time.monotonic() - started
    assert got.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert 0.25 <= waited < 2
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (504, "upstream_timeout")


@pytest.mark.gen_test(timeout=10)
async def test_an_app_that_came_up_after_the_client_connected_is_tried_again(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        proxy = sidecar(port)
        client = socket.create_connection(("127.0.0.1", proxy.port))  # the app is down: connecting fails
    try:
        await eventually(lambda: proxy.counters.connections_open == 1)
        await asyncio.sleep(0.1)
        backend(answer(len(GET), OK), port=port)  # now it is up
        client.sendall(GET)
        assert await in_thread(read_all, client, len(OK)) == OK
    finally:
        client.close()
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (200, None)


@pytest.mark.gen_test(timeout=10)
async def test_502_reaches_a_client_still_uploading(io_loop: Any, sidecar: Any) -> None:
    """The error response must not be lost to a reset while the client is still sending its body."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        proxy = sidecar(unused.getsockname()[1])

        def uploader() -> bytes:
            with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
                sock.sendall(b"POST /up HTTP/1.1\r\nContent-Length: 3000000\r\n\r\n")
                try:
                    for _ in range(30):
                        sock.sendall(b"x" * 100_000)
                except OSError:
                    pass
                return read_all(sock)

        got = await in_thread(uploader)
    assert got.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


# --- bad input ---------------------------------------------------------------------------------

NOT_HTTP = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(60)  # a TLS record
BAD = {
    "content-length and transfer-encoding": (
        b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
    "conflicting content-length": b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
    "obs-fold": b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    "bare lf": b"GET / HTTP/1.1\nHost: x\n\n",
    "transfer-encoding not chunked": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
}


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("name", sorted(BAD))
async def test_unframeable_requests_get_400_and_never_reach_the_app(
        io_loop: Any, backend: Any, sidecar: Any, name: str) -> None:
    app = backend(answer(1, OK))
    proxy = sidecar(app.port)
    got = await in_thread(talk, proxy.port, BAD[name])
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close\r\n" in got
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"]) == (400, "bad_request")
    assert proxy.counters.bad_requests == 1
    assert all(peer.received == b"" for peer in app.peers)
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_with_http1_forced_bytes_that_are_not_http_get_400_and_never_reach_the_app(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    # Detected, these would be a TLS tunnel (tests/test_opaque.py); forced to HTTP/1 they are refused.
    app = backend(answer(1, OK))
    proxy = sidecar(app.port, protocol="http1")
    got = await in_thread(talk, proxy.port, NOT_HTTP)
    preface = await in_thread(talk, proxy.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert preface.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close\r\n" in got
    samples = await proxy.wait_samples(2)
    assert [(s["response"]["status"], s["error"]) for s in samples] == [(400, "bad_request")] * 2
    assert all(peer.received == b"" for peer in app.peers)
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_bad_chunk_size_closes_the_app_connection(io_loop: Any, backend: Any, sidecar: Any) -> None:
    head = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

    def app_side(peer: Peer) -> None:
        peer.read_until_close()

    app = backend(app_side)
    proxy = sidecar(app.port)
    got = await in_thread(talk, proxy.port, head + b"3\r\nabc\r\nzz\r\n")
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await eventually(lambda: bool(app.peers) and app.peers[0].closed_by_peer.is_set(), what="app connection closed")
    sent = head + b"3\r\nabc\r\nzz\r\n"
    assert sent.startswith(bytes(app.peers[0].received)) and b"zz" not in app.peers[0].received


@pytest.mark.gen_test(timeout=10)
async def test_good_request_before_a_bad_one_is_answered_first(io_loop: Any, backend: Any, sidecar: Any) -> None:
    def app_side(peer: Peer) -> None:
        peer.read_until(len(GET))
        time.sleep(0.1)
        peer.send(OK)
        peer.read_until_close()

    app = backend(app_side)
    proxy = sidecar(app.port)
    got = await in_thread(talk, proxy.port, GET + BAD["obs-fold"])
    assert got.startswith(OK + b"HTTP/1.1 400 Bad Request\r\n")
    samples = await proxy.wait_samples(2)
    assert [(s["response"]["status"], s["error"]) for s in samples] == [(200, None), (400, "bad_request")]
    assert bytes(app.peers[0].received) == GET


@pytest.mark.gen_test(timeout=10)
async def test_a_client_leaving_while_its_bad_request_waits_is_noticed(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    def silent_app(peer: Peer) -> None:
        peer.read_until_close()

    app = backend(silent_app)
    proxy = sidecar(app.port)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(GET + BAD["obs-fold"])  # the 400 must wait for GET's answer, which never comes
        await eventually(lambda: proxy.counters.bad_requests == 1)
    samples = await proxy.wait_samples(2)
    assert sorted((s["response"]["status"], s["error"]) for s in samples) == [(0, "bad_request"), (0, "client_closed")]
    await eventually(lambda: app.peers[0].closed_by_peer.is_set(), timeout=2, what="the app's connection closed")
    await proxy.settled(timeout=2)


@pytest.mark.gen_test(timeout=10)
async def test_oversized_head_gets_431(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(1, OK))
    proxy = sidecar(app.port, max_header_bytes=1024)
    got = await in_thread(talk, proxy.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    [sample] = await proxy.wait_samples(1)
    assert (sample["response"]["status"], sample["error"], sample["method"]) == (431, "bad_request", "GET")


@pytest.mark.gen_test(timeout=10)
async def test_slowloris_head_is_cut_off(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(1, OK))
    proxy = sidecar(app.port, header_timeout=0.3, idle_timeout=30)

    def slow_head() -> tuple[bytes, float]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            try:
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 40:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.05)
            except OSError:
                pass
            return read_all(sock), time.monotonic() - started

    got, waited = await in_thread(slow_head)
    assert got in (b"", b"<RST>") and 0.3 <= waited < 1.5
    assert proxy.counters.timeouts["header"] == 1
    assert proxy.samples == []  # a head that never ended is not a request
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_idle_connections_are_closed(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK, then="wait"))
    proxy = sidecar(app.port, idle_timeout=0.3)

    def silent() -> float:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            assert read_all(sock) == b""
        return time.monotonic() - started

    def one_then_idle() -> bytes:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(GET)
            return read_all(sock)

    assert 0.3 <= await in_thread(silent) < 1.5
    assert await in_thread(one_then_idle) == OK
    assert proxy.counters.timeouts["idle"] == 2
    assert [s["error"] for s in proxy.samples] == [None]


@pytest.mark.gen_test(timeout=10)
async def test_stalled_upload_is_cut_off(io_loop: Any, backend: Any, sidecar: Any) -> None:
    def app_side(peer: Peer) -> None:
        peer.read_until_close()

    app = backend(app_side)
    proxy = sidecar(app.port, idle_timeout=0.3)
    got = await in_thread(talk, proxy.port, b"POST /up HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly some")
    assert got == b""
    [sample] = await proxy.wait_samples(1)
    assert sample["error"] == "client_closed" and proxy.counters.timeouts["body"] == 1


@pytest.mark.gen_test(timeout=20)
async def test_random_input_never_breaks_the_server(
        io_loop: Any, backend: Any, sidecar: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = backend(answer(len(GET), OK, then="wait"))
    proxy = sidecar(app.port, header_timeout=1, idle_timeout=1)
    rng = random.Random(2)
    pieces = [GET, POST, CHUNKED_POST, b"\r\n", b"HTTP/1.1", b" ", b"Content-Length: 5\r\n",
              b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"\x00\xff", b"\n", b"Connection: close\r\n"]
    blobs = [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(80)]
    blobs += [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]

    def send_all(share: list[bytes]) -> None:
        for blob in share:
            with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
                sock.sendall(blob)
                read_all(sock, timeout=0.05)

    with caplog.at_level(logging.ERROR):
        await asyncio.gather(*(in_thread(send_all, blobs[i::4]) for i in range(4)))
        assert await in_thread(talk, proxy.port, GET, until=len(OK)) == OK
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    await proxy.settled(timeout=8)


# --- flow control and memory ---------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_a_slow_reader_slows_the_app(io_loop: Any, backend: Any, sidecar: Any) -> None:
    size = 64 << 20
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    sent = [0]

    def big_app(peer: Peer) -> None:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        peer.read_until(len(GET))
        peer.send(head)
        block = b"z" * 65536
        for _ in range(size // len(block)):
            peer.send(block)
            sent[0] += len(block)

    app = backend(big_app)
    proxy = sidecar(app.port)

    def lazy_client() -> tuple[int, int]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.connect(("127.0.0.1", proxy.port))
            sock.sendall(GET)
            time.sleep(0.5)
            while_stalled = sent[0]
            return while_stalled, len(read_all(sock, until=size + len(head), timeout=10))

    while_stalled, total = await in_thread(lazy_client)
    # Only socket buffers and one chunk can be in between, not the whole body.
    assert while_stalled < 24 << 20, while_stalled
    assert total == size + len(head)
    [sample] = await proxy.wait_samples(1)
    assert sample["bytes_out"] == total


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_a_gigabyte_each_way_with_bounded_memory(io_loop: Any, backend: Any, sidecar: Any) -> None:
    size = 1 << 30
    block = os.urandom(1 << 20)
    head = b"PUT /blob HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
    response_head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size

    def app_side(peer: Peer) -> None:
        sink = 0
        while sink < len(head) + size:
            data = peer.sock.recv(1 << 20)
            if not data:
                return
            sink += len(data)
        peer.send(response_head)
        for _ in range(size // len(block)):
            peer.send(block)

    app = backend(app_side)
    proxy = sidecar(app.port)
    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    def client() -> int:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head)
            for _ in range(size // len(block)):
                sock.sendall(block)
            got = 0
            while got < len(response_head) + size:
                data = sock.recv(1 << 20)
                if not data:
                    break
                got += len(data)
            return got

    baseline = peak[0]
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        received = await in_thread(client)
    finally:
        done.set()
        watcher.join()
    assert received == len(response_head) + size
    [sample] = await proxy.wait_samples(1)
    assert (sample["bytes_in"], sample["bytes_out"]) == (len(head) + size, len(response_head) + size)
    assert peak[0] - baseline < 40 << 20, f"RSS grew by {(peak[0] - baseline) >> 20} MiB"


# --- samples, callbacks, shutdown --------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_sample_flags_and_query(io_loop: Any, backend: Any, sidecar: Any) -> None:
    probe = b"GET /healthz HTTP/1.1\r\nUser-Agent: kube-probe/1.30\r\n\r\n"
    asset = b"GET /static/app.3f2a9c.js?v=2 HTTP/1.1\r\n\r\n"
    app = backend(answer(len(probe) + len(asset), OK + OK))
    proxy = sidecar(app.port, record_query=True)
    await in_thread(talk, proxy.port, probe + asset)
    first, second = await proxy.wait_samples(2)
    assert (first["probe"], first["file"], first["endpoint"]) == (True, False, "/healthz")
    assert (second["probe"], second["file"], second["endpoint"]) == (False, True, "/static/app.3f2a9c.js?v=2")


@pytest.mark.gen_test(timeout=10)
async def test_a_failing_callback_does_not_break_the_proxy(
        io_loop: Any, backend: Any, closing: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    app = backend(answer(len(GET), OK))

    def broken(sample: Sample) -> None:
        raise RuntimeError("full")

    server = SidecarServer(SidecarConfig(target_port=app.port), broken)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    closing.append(Closer(server.stop, server.close_all))
    with caplog.at_level(logging.ERROR):
        assert await in_thread(talk, port, GET) == OK
        assert await in_thread(talk, port, GET) == OK
    await eventually(lambda: server.counters.sample_errors == 2)
    assert server.counters.exchanges_total == 2
    assert any("on_sample failed" in r.getMessage() for r in caplog.records)


def test_the_server_takes_one_consumer_of_samples() -> None:
    config = SidecarConfig(target_port=1)
    with pytest.raises(ValueError, match="one of on_sample and on_record"):
        SidecarServer(config)
    with pytest.raises(ValueError, match="one of on_sample and on_record"):
        SidecarServer(config, print, on_record=print)


@pytest.mark.gen_test(timeout=10)
async def test_records_reach_on_record_as_the_samples_on_sample_gets(io_loop: Any, backend: Any,
                                                                    closing: list[Any]) -> None:
    app = backend(answer(len(GET), OK))
    records: list[Record] = []
    samples: list[Sample] = []
    for consumer in ({"on_record": records.append}, {"on_sample": samples.append}):
        server = SidecarServer(SidecarConfig(target_port=app.port), **consumer)  # type: ignore[arg-type]
        sock, port = bind_unused_port()
        server.add_sockets([sock])
        closing.append(Closer(server.stop, server.close_all))
        assert await in_thread(talk, port, GET) == OK
        await eventually(lambda server=server: server.counters.exchanges_total == 1 and not server.counters.unreported)
    assert len(records) == len(samples) == 1
    mine, theirs = records[0].to_sample(), samples[0]
    assert {k: v for k, v in mine.items() if k not in ("time", "ttfb", "started")} == \
        {k: v for k, v in theirs.items() if k not in ("time", "ttfb", "started")}
    assert mine["route"] == "/users/{id}" and mine["response"]["status"] == 200


@pytest.mark.gen_test(timeout=10)
async def test_drain_waits_for_exchanges_in_flight(io_loop: Any, backend: Any, sidecar: Any) -> None:
    def slow_app(peer: Peer) -> None:
        if peer.read_until(len(GET)):
            time.sleep(0.3)
            peer.send(OK)
            peer.read_until_close()

    app = backend(slow_app)
    proxy = sidecar(app.port)
    idle = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        slow = io_loop.run_in_executor(None, talk, proxy.port, GET)
        await eventually(lambda: proxy.counters.exchanges_in_flight == 1)
        proxy.server.stop()
        started = time.monotonic()
        assert await proxy.server.drain(5) is True
        assert 0.1 < time.monotonic() - started < 2
        assert await slow == OK  # answered in full, then closed
        assert read_all(idle, timeout=1) == b""  # the idle connection was closed at once
    finally:
        idle.close()
    await proxy.settled()


@pytest.mark.gen_test(timeout=10)
async def test_drain_gives_up_after_its_timeout(io_loop: Any, backend: Any, sidecar: Any) -> None:
    def stuck_app(peer: Peer) -> None:
        peer.read_until_close()

    app = backend(stuck_app)
    proxy = sidecar(app.port)
    stuck = io_loop.run_in_executor(None, talk, proxy.port, GET)
    await eventually(lambda: proxy.counters.exchanges_in_flight == 1)
    assert await proxy.server.drain(0.2) is False
    proxy.server.close_all()
    assert await stuck == b""
    [sample] = await proxy.wait_samples(1)
    assert sample["error"] == "upstream_reset"
    await proxy.settled()


# --- how samples are handed over, read sizes, name lookups --------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_samples_come_after_the_batch_delay_and_count_as_in_flight_until_then(
        io_loop: Any, backend: Any, sidecar: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "REPORT_DELAY", 1.0)  # long enough to look in between
    app = backend(answer(len(GET) * 5, OK * 5, then="wait"))
    proxy = sidecar(app.port)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:  # kept open: the delay, not a close, hands over
        await in_thread(sock.sendall, GET * 5)
        assert await in_thread(read_all, sock, len(OK) * 5) == OK * 5
        assert proxy.samples == [] and proxy.counters.exchanges_in_flight == 5
        assert proxy.counters.exchanges_total == 5  # counted at once
        started = time.monotonic()
        samples = await proxy.wait_samples(5, timeout=3)
        assert 0.5 < time.monotonic() - started < 2 and proxy.counters.exchanges_in_flight == 0
        assert [s["response"]["status"] for s in samples] == [200] * 5


@pytest.mark.gen_test(timeout=10)
async def test_samples_of_an_open_connection_come_within_milliseconds(
        io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK, then="wait"))
    proxy = sidecar(app.port)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        await in_thread(sock.sendall, GET)
        assert await in_thread(read_all, sock, len(OK)) == OK
        await proxy.wait_samples(1, timeout=0.5)
        assert proxy.counters.exchanges_in_flight == 0


@pytest.mark.gen_test(timeout=10)
async def test_a_closed_connection_has_handed_over_its_samples(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK))
    proxy = sidecar(app.port)
    for n in range(1, 4):
        assert await in_thread(talk, proxy.port, GET) == OK
        await eventually(lambda: proxy.counters.connections_open == 0)
        assert len(proxy.samples) == n  # no wait for the batch delay once the connection is gone


@pytest.mark.gen_test(timeout=10)
async def test_close_all_hands_over_every_sample(io_loop: Any, backend: Any, sidecar: Any) -> None:
    app = backend(answer(len(GET), OK, then="wait"))
    proxy = sidecar(app.port)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        await in_thread(sock.sendall, GET)
        assert await in_thread(read_all, sock, len(OK)) == OK
        proxy.server.close_all()  # at once, before the batch delay is up
        assert [s["response"]["status"] for s in proxy.samples] == [200]
        assert proxy.counters.exchanges_in_flight == 0


@pytest.mark.gen_test(timeout=20)
async def test_after_a_big_body_both_sides_read_freely_again(io_loop: Any, backend: Any, sidecar: Any) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (16 << 20) + os.urandom(16 << 20)

    def app_side(peer: Peer) -> None:
        if peer.read_until(len(GET)):
            peer.send(big)
        for n in range(2, 7):
            if peer.read_until(n * len(GET)):
                peer.send(OK)
        peer.read_until_close()

    app = backend(app_side)
    proxy = sidecar(app.port)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # so the kernel does not take it all
        sock.connect(("127.0.0.1", proxy.port))
        await in_thread(sock.sendall, GET)
        await asyncio.sleep(0.3)  # the client reads nothing yet: the app's side must stop reading
        [conn] = proxy.counters.connections
        assert conn.upstream is not None and conn.upstream.holds != 0
        assert conn.client.transport.get_write_buffer_size() < 8 * 65536  # bounded, not the 16 MiB
        assert await in_thread(read_all, sock, len(big)) == big
        for _ in range(5):
            await in_thread(sock.sendall, GET)
            assert await in_thread(read_all, sock, len(OK)) == OK
        assert (conn.upstream.holds, conn.client.holds) == (0, 0)  # nothing left paused
        samples = await proxy.wait_samples(6)
        assert [s["bytes_out"] for s in samples] == [len(big)] + [len(OK)] * 5


@pytest.mark.gen_test(timeout=10)
async def test_a_target_name_is_looked_up_once_per_ttl(
        io_loop: Any, backend: Any, sidecar: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pooled: list[str] = []  # lookups made in the executor, not on the loop
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            pooled.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    app = backend(answer(len(GET), OK))
    proxy = sidecar(app.port, target_host="localhost")
    for _ in range(3):
        assert await in_thread(talk, proxy.port, GET) == OK
    assert pooled.count("localhost") == 1
    proxy.server.resolver.ttl = 0.0
    assert await in_thread(talk, proxy.port, GET) == OK
    assert pooled.count("localhost") == 2  # after the TTL, looked up again: DNS changes are followed
