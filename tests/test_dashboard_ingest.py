"""The ingest path below the handlers: kept-alive POSTs, the HTTP details, and what still goes to the app
(a connection that starts otherwise, or changes course halfway).

The refusals themselves (token, type, size, bad JSON) are in test_dashboard_handlers.py.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest
import requests
import ujson

from app import paths
from app.core.wire import WireError
from app.dashboard.front import may_be_ingest
from app.dashboard.ingest import decode_body
from app.options import DashboardConfig
from tests.dashboard_support import T0, FakeClock, Running, running, sample, stats_body
from tests.fault_support import rss_bytes, start_dashboard


def request(path: str, body: bytes, *, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return (f"POST {path} {version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[bytes, Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, ujson.loads(await asyncio.wait_for(reader.readexactly(length), 5))


async def connect(server: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


def test_decode_body_refuses_what_cannot_be_stored() -> None:
    assert decode_body(b'{"pod": "a"}') == {"pod": "a"}
    for bad, words in ((b"  ", "empty"), (b"{", "not valid JSON"), (b'"\\udc00"', "surrogates")):
        with pytest.raises(WireError, match=words):
            decode_body(bad)


@pytest.mark.gen_test(timeout=20)
async def test_many_posts_on_one_kept_connection_are_each_counted(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        reader, writer = await connect(server)
        for i in range(30):
            body = ujson.dumps(stats_body("shop-1-a", [sample(started=T0 + 1)], batch=f"b{i}")).encode()
            writer.write(request("/stats", body))
            head, reply = await read_reply(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"chunked" not in head.lower()
            assert reply == {"response": "saved", "pod": "shop-1-a", "duplicate": False, "samples": 1, "cells": 1}
        # Pipelined: three requests written at once are answered in order.
        writer.write(b"".join(request("/resources", b'{"pod": "shop-1-a", "resource": {}}') for _ in range(3)))
        for _ in range(3):
            assert (await read_reply(reader))[1] == {"response": "saved"}
        writer.close()
        (pod,) = await server.get_json("/stats")
        assert pod["count"] == 30


@pytest.mark.gen_test(timeout=20)
async def test_http_1_0_and_expect_continue(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        body = b'{"pod": "a-1-x", "stats": []}'
        reader, writer = await connect(server)
        writer.write(request("/stats", body, version="HTTP/1.0"))
        head, _reply = await read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # HTTP/1.0 without keep-alive: closed
        writer.close()

        reader, writer = await connect(server)
        writer.write(request("/stats", body, extra="Expect: 100-continue\r\n")[:-len(body)])  # the head only
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 100")
        writer.write(body)
        head, reply = await read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200") and reply["pod"] == "a-1-x"
        writer.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_store_failure_is_a_500_and_the_connection_goes_on(io_loop: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        store = server.app.dashboard.store
        real = store.ingest_resources

        def broken(report: Any) -> None:
            raise RuntimeError("a bug")

        store.ingest_resources = broken  # type: ignore[method-assign]
        reader, writer = await connect(server)
        writer.write(request("/resources", b'{"pod": "a-1-x", "resource": {}}'))
        head, reply = await read_reply(reader)
        assert head.startswith(b"HTTP/1.1 500") and reply == {"error": "Internal Server Error"}
        assert "POST /resources failed" in caplog.text and "a bug" in caplog.text
        store.ingest_resources = real  # type: ignore[method-assign]
        writer.write(request("/resources", b'{"pod": "a-1-x", "resource": {}}'))
        assert (await read_reply(reader))[0].startswith(b"HTTP/1.1 200")
        writer.close()


@pytest.mark.gen_test(timeout=20)
async def test_refusals_are_logged_and_everything_else_goes_to_the_app(io_loop: Any,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running(DashboardConfig(data=":memory:", token="t0ken"), FakeClock(T0 + 10)) as server:
        response = await server.post("/stats?x=1", stats_body("a-1-x", []))
        assert response.code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Server" not in response.headers  # the ingest answered
        assert "401 POST /stats (127.0.0.1)" in caplog.text and "t0ken" not in caplog.text
        assert (await server.post("/stats?x=1", stats_body("a-1-x", []),
                                  headers={"Authorization": "Bearer t0ken"})).code == 200
        for method, path, code in (("POST", "/stats/", 404), ("PUT", "/stats", 405), ("POST", "/healthz", 405),
                                   ("GET", "/stats", 200)):
            response = await server.fetch(path, method, raw=b"{}" if method != "GET" else None)
            assert response.code == code, (method, path)
            assert response.headers["Server"].startswith("TornadoServer")  # the app answered, not the ingest
        assert [p["pod"] for p in await server.get_json("/stats")] == ["a-1-x"]


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def test_a_connection_is_served_as_a_sidecar_s_when_its_first_bytes_may_be_an_ingest_post() -> None:
    for first in (b"P", b"POST /sta", b"POST /stats", b"POST /stats?x=1 HTTP/1.1", b"POST /resources HTTP/1.1"):
        assert may_be_ingest(first), first
    for first in (b"G", b"GET /stats HTTP/1.1", b"POST /healthz", b"PUT /stats", b"\x16\x03\x01"):
        assert not may_be_ingest(first), first


@pytest.mark.gen_test(timeout=20)
async def test_a_sidecar_connection_that_asks_for_something_else_is_handed_to_the_app_and_goes_on(
        io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        body = ujson.dumps(stats_body("shop-1-a", [sample(started=T0 + 1)], batch="b1")).encode()
        reader, writer = await connect(server)
        writer.write(request("/stats", body))
        head, _ = await read_response(reader)
        assert b"Server:" not in head  # the ingest answered
        writer.write(get("/stats"))
        head, listed = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and b"Server: TornadoServer" in head  # the app answered
        assert [p["count"] for p in ujson.loads(listed)] == [1]
        # From here the app serves this connection, POSTs included, with the same checks and counts.
        again = ujson.dumps(stats_body("shop-1-a", [sample(started=T0 + 2)], batch="b2")).encode()
        writer.write(request("/stats", again) + request("/stats", again))  # the second is a duplicate
        replies = [ujson.loads((await read_response(reader))[1]) for _ in range(2)]
        assert [r["duplicate"] for r in replies] == [False, True]
        # A large answer comes through whole (the relay's flow control).
        writer.write(get("/static/chart.umd.min.js"))
        head, script = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and script == (paths.STATIC_DIR / "chart.umd.min.js").read_bytes()
        writer.close()
        (pod,) = await server.get_json("/stats")
        assert pod["count"] == 2
        assert "mothership_ingest_handoffs_total 1.0" in (await server.fetch("/metrics")).body.decode()


@pytest.mark.gen_test(timeout=20)
async def test_a_post_on_a_connection_the_app_serves_is_checked_and_counted_as_the_ingest_does(
        io_loop: Any) -> None:
    async with running(DashboardConfig(data=":memory:", token="t0ken", max_body_bytes=2000),
                       FakeClock(T0 + 10)) as server:
        reader, writer = await connect(server)
        writer.write(get("/healthz"))
        assert (await read_response(reader))[0].startswith(b"HTTP/1.1 200")
        body = ujson.dumps(stats_body("shop-1-a", [sample(started=T0 + 1)])).encode()
        writer.write(request("/stats", body))
        head, reply = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 401") and b"www-authenticate: bearer" in head.lower()
        writer.write(request("/stats", body, extra="Authorization: Bearer t0ken\r\n"))
        head, reply = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and b"Server: TornadoServer" in head
        assert ujson.loads(reply)["samples"] == 1
        chunked = b"POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken\r\n" \
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" \
                  + b"%x\r\n%s\r\n" % (2500, b" " * 2500) + b"0\r\n\r\n"
        writer.write(chunked)
        head, reply = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 413") and b"2000" in reply
        writer.close()
        (pod,) = await server.get_json("/stats", headers={"Authorization": "Bearer t0ken"})
        assert pod["count"] == 1


@pytest.mark.gen_test(timeout=20)
async def test_requests_in_pieces_chunked_bodies_and_bad_framing(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        body = ujson.dumps(stats_body("shop-1-a", [sample(started=T0 + 1)])).encode()
        reader, writer = await connect(server)
        for byte in request("/stats", body):  # one byte at a time
            writer.write(bytes([byte]))
            await writer.drain()
        assert ujson.loads((await read_response(reader))[1])["samples"] == 1
        chunks = [body[:10], body[10:]]
        writer.write(b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
        assert ujson.loads((await read_response(reader))[1])["duplicate"] is False
        # Pipelined behind an ingest POST in the same write, another request cannot be handed on: a clear 400.
        writer.write(request("/resources", b'{"pod": "shop-1-a", "resource": {}}') + get("/stats"))
        assert (await read_response(reader))[0].startswith(b"HTTP/1.1 200")
        head, error = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 400") and b"same read" in error
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

        for bad, status in ((b"POST /stats HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
                            (b"POST /stats HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n", b"431")):
            reader, writer = await connect(server)
            writer.write(bad)
            head, error = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 " + status) and b"error" in error
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        (pod,) = await server.get_json("/stats")
        assert pod["count"] == 2
        metrics = (await server.fetch("/metrics")).body.decode()
        for reason in ("malformed", "head_too_large", "pipelined"):
            assert f'mothership_ingest_refused_requests_total{{reason="{reason}"}} 1.0' in metrics, reason


# --- a refused POST lingers, so clients that write the whole body first read the answer (issue 13) -------------

BIG = 24 * 1024 * 1024  # over the 4 MiB limit, far over a socket's buffers


@pytest.mark.parametrize("client", ["urllib", "requests"])
def test_a_refused_24_mb_post_is_answered_to_clients_that_write_it_all_first(run_app: Any, client: str) -> None:
    """413 (size) and 401 (token) come from the head; the dashboard then reads and drops the rest."""
    dashboard = start_dashboard(run_app, env={"DASHBOARD_TOKEN": "t0ken"})
    body = b'{"pod": "big-1-x", "stats": [' + b" " * (BIG - 32) + b"]}"
    url = f"http://127.0.0.1:{dashboard.port}/stats"
    before = rss_bytes(dashboard.pid)
    for token, status in (("t0ken", 413), ("wrong", 401)):
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        if client == "urllib":
            try:
                urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=20)
                raise AssertionError("accepted")
            except urllib.error.HTTPError as error:
                got, answer = error.code, error.read()
        else:
            reply = requests.post(url, data=body, headers=headers, timeout=20)
            got, answer = reply.status_code, reply.content
        assert got == status and b"error" in answer, (got, answer[:200])
    assert dashboard.json("/stats") == []
    assert rss_bytes(dashboard.pid) - before < 16e6  # dropped as it came, never gathered
    assert dashboard.metric("mothership_ingest_requests_total", outcome="too_large") == 1
    assert dashboard.metric("mothership_ingest_requests_total", outcome="unauthorized") == 1
