"""`/ws` with real WebSocket clients: snapshot, coalesced updates, series, Origin, view token, stuck clients."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
import ujson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from app.options import DashboardConfig
from tests.dashboard_support import T0, FakeClock, Running, running, sample, stats_body, stuck_websocket


async def connect(server: Running, *, origin: str | None = None, query: str = "",
                  headers: dict[str, str] | None = None) -> WebSocketClientConnection:
    sent = dict(headers or {})
    if origin is not None:
        sent["Origin"] = origin
    return await websocket_connect(HTTPRequest(server.ws_url + query, headers=sent))


async def read(ws: WebSocketClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.read_message(), timeout)
    assert message is not None, "the server closed the socket"
    return ujson.loads(message)  # type: ignore[no-any-return]


async def nothing_within(ws: WebSocketClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.read_message(), seconds)
    except TimeoutError:
        return True
    return False


@pytest.mark.gen_test(timeout=30)
async def test_snapshot_first_then_a_post_shows_within_a_second(io_loop: Any) -> None:
    clock = FakeClock(T0 + 10)
    async with running(clock=clock) as server:
        ws = await connect(server)
        first = await read(ws)
        assert first["type"] == "snapshot" and first["data"]["totals"]["pods"] == 0
        posted = time.monotonic()
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 5)] * 4))
        update = await read(ws, 3)
        assert update["type"] == "update" and time.monotonic() - posted < 1.3
        assert update["data"]["pods"][0]["pod"] == "shop-1-a" and update["data"]["totals"]["pods"] == 1
        # Nothing changed: nothing is sent.
        assert await nothing_within(ws, 1.5)
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_updates_are_coalesced_to_one_per_tick(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 20)) as server:
        ws = await connect(server)
        await read(ws)
        for i in range(30):
            await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 5)], batch=str(i)))
        update = await read(ws, 3)
        assert update["data"]["totals"]["rps"] > 0
        arrived = 1
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if await nothing_within(ws, deadline - time.monotonic()):
                break
            arrived += 1
        assert arrived <= 2  # 30 posts, at most one update per one-second tick
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_subscribe_gets_a_series_then_its_tail_with_each_update(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 5)] * 3))
        ws = await connect(server)
        await read(ws)
        await ws.write_message(ujson.dumps({"type": "subscribe", "scope": "pod:shop-1-a", "window": 300}))
        series = await read(ws)
        assert series["type"] == "series" and series["scope"] == "pod:shop-1-a" and series["window"] == 300
        assert len(series["data"]["t"]) == 300 and series["data"]["rps"]["2xx"][-6] == 3.0
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 6)] * 2))
        kinds = {}
        for _ in range(2):
            message = await read(ws, 3)
            kinds[message["type"]] = message
        assert set(kinds) == {"update", "series"}
        tail = kinds["series"]["data"]
        assert len(tail["t"]) == 30 and tail["rps"]["2xx"][-5] == 2.0

        for bad in ("{", '{"type": "hello"}', '{"type": "subscribe", "scope": "pod:nope", "window": 300}',
                    '{"type": "subscribe", "scope": "all", "window": 7}'):
            await ws.write_message(bad)
            error = await read(ws)
            assert error["type"] == "error" and error["error"], bad
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_origin_is_checked(io_loop: Any) -> None:
    config = DashboardConfig(data=":memory:", allowed_origins=("https://dash.example.com",))
    async with running(config, FakeClock(T0 + 10)) as server:
        with pytest.raises(HTTPClientError) as refused:
            await connect(server, origin="http://evil.example.com")
        assert refused.value.code == 403
        ws = await connect(server, origin=f"http://127.0.0.1:{server.port}")
        assert (await read(ws))["type"] == "snapshot"
        ws.close()
        ws = await connect(server, origin="https://dash.example.com")
        assert (await read(ws))["type"] == "snapshot"
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_view_token_guards_the_socket(io_loop: Any) -> None:
    config = DashboardConfig(data=":memory:", view_token="look")
    async with running(config, FakeClock(T0 + 10)) as server:
        with pytest.raises(HTTPClientError) as refused:
            await connect(server)
        assert refused.value.code == 401
        ws = await connect(server, query="?token=look")
        assert (await read(ws))["type"] == "snapshot"
        ws.close()
        basic = base64.b64encode(b"me:look").decode()
        ws = await connect(server, headers={"Authorization": f"Basic {basic}"})
        assert (await read(ws))["type"] == "snapshot"
        ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_flooding_messages_is_closed(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        ws = await connect(server)
        await read(ws)
        for _ in range(50):
            await ws.write_message('{"type": "hello"}')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if await asyncio.wait_for(ws.read_message(), 5) is None:
                break
        assert ws.close_code == 1008
        ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_never_reads_holds_one_message_and_blocks_no_one(io_loop: Any) -> None:
    clock = FakeClock(T0 + 10)
    async with running(clock=clock, tick_interval=0.2) as server:
        # Many pods make each update large, so the stuck socket's kernel buffers fill quickly.
        for i in range(300):
            await server.post("/stats", stats_body(f"app{i % 5}-{i}-x", [sample(f"/r{k}x", started=T0 + 5)
                                                                         for k in range(6)]))
        _, stuck_writer = await stuck_websocket(server.port)
        good = await connect(server)
        await read(good)
        hub = server.app.dashboard.hub
        size = len(hub.overview_json())
        assert size > 100_000
        arrivals = []
        buffered = []
        for round_ in range(25):
            await server.post("/stats", stats_body("app0-0-x", [sample(started=T0 + 6)], batch=f"r{round_}"))
            sent = time.monotonic()
            message = await read(good, 3)
            assert message["type"] == "update"
            arrivals.append(time.monotonic() - sent)
            stuck = [c for c in hub.clients if c._writing]
            if stuck:
                (socket,) = stuck
                assert len(socket._pending) <= 1  # the newest update only, never a queue
                buffered.append(len(socket.ws_connection.stream._write_buffer))  # type: ignore[union-attr]
        assert max(arrivals) < 1.0  # the stuck client held no one up
        assert len(hub.clients) == 2 and len(buffered) >= 4  # it did get stuck, and stayed connected
        assert max(buffered) < 2 * size  # at most the one message in flight, whatever the rounds
        good.close()
        stuck_writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_large_update_is_built_in_steps_with_posts_served_in_between(io_loop: Any) -> None:
    """At thousands of pods the overview takes tens of ms to build: POSTs must not wait for all of it."""
    async with running(clock=FakeClock(T0 + 10), start=False) as server:
        for i in range(300):
            await server.post("/stats", stats_body(f"shop-{i}-a", [sample(f"/r{i % 7}", started=T0 + 5)] * 3))
        ws = await connect(server)
        await read(ws)  # the snapshot
        await server.post("/stats", stats_body("late-1-a", [sample(started=T0 + 6)]))
        store, hub = server.app.dashboard.store, server.app.dashboard.hub
        steps = store.overview_steps(budget=0.0)  # every pod a step: a yield after each
        assert sum(1 for _ in steps) == 301
        done: list[str] = []
        # A connection made beforehand (a sidecar's is kept open): the POST then needs only a few
        # turns of the loop, with no name lookup in a thread that a loaded machine could delay.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b'{"pod": "shop-1-a", "resource": {}}'

        async def post_meanwhile() -> None:
            writer.write(b"POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            done.append("post")

        async def push() -> None:
            await hub.push()
            done.append("push")

        hub.overview_step = 0.0
        await asyncio.gather(post_meanwhile(), push())
        assert done == ["post", "push"]  # answered while the update was being built
        writer.close()
        update = await read(ws)
        assert update["type"] == "update"
        assert update["data"] == ujson.loads(store.overview_json()) | {"now": update["data"]["now"]}
        assert len(update["data"]["pods"]) == 301
