"""The dashboard freezes what is alive after each tick and drain (app.dashboard.server): that is only safe
if serving leaves no reference cycles behind, which a frozen collector would never free."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler
from tornado.websocket import websocket_connect

from app.dashboard import front, ingest_http
from app.options import DashboardConfig
from tests.dashboard_support import T0, FakeClock, running, sample, stats_body

# What there is one of per request or connection (the server itself is one per process).
SERVER_SIDE = (RequestHandler, HTTPServerRequest, HTTP1ServerConnection, ingest_http.IngestConnection,
               front._FirstBytes, front._ClientSide, front._AppSide)


@pytest.mark.gen_test(timeout=60)
async def test_serving_pages_apis_sockets_and_sidecars_leaves_no_cycles_for_a_frozen_collector(io_loop: Any) -> None:
    # The collector off while serving: a cycle is then certainly alive at the next freeze, instead of
    # only when no young collection happened to come first (which made this test fail once in a while).
    gc.disable()
    try:
        await serve_everything_and_stop()
    finally:
        gc.enable()
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage if isinstance(o, SERVER_SIDE)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


async def serve_everything_and_stop() -> None:
    async with running(DashboardConfig(data=":memory:", token="t0ken"), FakeClock(T0 + 10), freeze=True,
                       tick_interval=0.05) as server:
        client = AsyncHTTPClient()
        auth = {"Authorization": "Bearer t0ken"}
        for round_ in range(10):
            for path in ("/", "/metrics", "/api/overview", "/stats", "/healthz", "/static/app.js", "/nowhere"):
                await client.fetch(server.url + path, raise_error=False)
            await server.post("/stats", stats_body(f"a-{round_}-x", [sample(started=T0 + 5)] * 3), headers=auth)
            await server.post("/stats", stats_body("a-1-x", []))  # refused: no token
            post = (b"POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(post)  # a 400 (no pod), then handed on to the app through the relay
            await reader.readuntil(b'"}')
            writer.write(get)
            assert b"200 OK" in await reader.read()
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(post + get)  # pipelined: refused
            await reader.read()
            writer.close()
            ws = await websocket_connect(server.ws_url)
            await ws.read_message()
            ws.close()
            await asyncio.sleep(0.06)  # a tick, and a freeze, between rounds
        await asyncio.sleep(0.2)
