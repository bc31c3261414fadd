"""HeadWatch on a real dashboard: connections that never finish a request are closed, busy and upgraded ones are not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tornado.websocket import websocket_connect

from tests.dashboard_support import T0, FakeClock, running

TIMEOUT = 0.4  # the sweep runs every TIMEOUT / 3
POST = b"POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n" \
       b'{"pod": "a-1-x", "resource": {}}   '


async def closed_after(reader: asyncio.StreamReader, limit: float = 3.0) -> float:
    """Seconds until the server closes the connection (it sends nothing first)."""
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), limit) == b""
    return time.monotonic() - started


@pytest.mark.gen_test(timeout=20)
async def test_silent_connections_and_unfinished_requests_are_closed_in_time(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10), head_timeout=TIMEOUT) as server:
        silent = await asyncio.open_connection("127.0.0.1", server.port)
        slow = await asyncio.open_connection("127.0.0.1", server.port)
        slow[1].write(b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        bodiless = await asyncio.open_connection("127.0.0.1", server.port)
        bodiless[1].write(POST[:POST.index(b"\r\n\r\n") + 4] + b'{"pod"')  # a head, then a body that stops
        waited = await asyncio.gather(*(closed_after(c[0]) for c in (silent, slow, bodiless)))
        assert all(TIMEOUT * 0.9 <= w <= TIMEOUT * 2 for w in waited), waited
        for _reader, writer in (silent, slow, bodiless):
            writer.close()
        assert len(server.app.dashboard.heads) == 0


@pytest.mark.gen_test(timeout=20)
async def test_a_kept_connection_in_use_stays_and_is_closed_once_idle(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10), head_timeout=TIMEOUT) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(12):  # 1.2 s of POSTs, three times the timeout
            await asyncio.sleep(0.1)
            writer.write(POST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200")
            await reader.readexactly(20)
        assert TIMEOUT * 0.9 <= await closed_after(reader) <= TIMEOUT * 2
        writer.close()


@pytest.mark.gen_test(timeout=20)
async def test_websockets_are_not_swept(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10), head_timeout=TIMEOUT) as server:
        ws = await websocket_connect(f"ws://127.0.0.1:{server.port}/ws")
        assert await asyncio.wait_for(ws.read_message(), 5) is not None  # the snapshot
        await asyncio.sleep(TIMEOUT * 3)
        await ws.write_message("still here?")  # raises if the server closed it
        assert ws.close_code is None
        ws.close()
