"""The ingest path below the handlers: kept-alive POSTs, the HTTP details, and what still goes to the app.

The refusals themselves (token, type, size, bad JSON) are in test_dashboard_handlers.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import ujson

from app.dashboard.ingest import decode_body
from app.options import DashboardConfig
from app.wire import WireError
from tests.dashboard_support import T0, FakeClock, Running, running, sample, stats_body


def request(path: str, body: bytes, *, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return (f"POST {path} {version}\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
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
