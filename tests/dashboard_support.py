"""Test support for the dashboard: a fake clock, wire payload builders, an in-process server.

The server is the real `make_app` listening on a free 127.0.0.1 port and is
driven by real HTTP and WebSocket clients; only the clock is faked.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import random
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import ujson
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.core.histogram import OVERFLOW
from app.core.routes import template
from app.core.summary import SummaryBuilder
from app.core.wire import Sample, parse_stats
from app.dashboard.aggregate import PodStore
from app.dashboard.buckets import Traffic
from app.dashboard.packed import pack_pairs, pack_status
from app.dashboard.server import DashboardApplication, listen, make_app
from app.options import DashboardConfig
from tests.conftest import free_port

T0 = 1_700_000_000.0  # a fixed epoch second for fake clocks: a multiple of 5 and 10, but 20 s into its minute


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sample(path: str = "/users/42", *, status: int = 200, ms: float = 10.0, started: float = T0,
           method: str = "GET", error: str | None = None, bytes_out: int = 100) -> Sample:
    """One exchange in wire shape; `started` in epoch seconds."""
    return {"endpoint": path, "route": template(path), "method": method,
            "response": {"status": status, "message": "OK" if status < 400 else "Error"},
            "time": ms, "ttfb": ms / 2, "started": started * 1000.0, "file": False, "bytes_in": 50,
            "bytes_out": bytes_out, "probe": False, "error": error}


def cells_for(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """The summary cells our sidecar would send for `samples`."""
    builder = SummaryBuilder()
    for s in samples:
        builder.add(s)
    return builder.drain()


def stats_body(pod: str, samples: Iterable[Sample], *, batch: str | None = None, summary: bool = True,
               app: str | None = None, dropped: int = 0, raw: int | None = None) -> dict[str, Any]:
    """A POST /stats body as our sidecar sends it: summary cells plus (at most `raw`) raw samples."""
    samples = list(samples)
    body: dict[str, Any] = {"pod": pod, "stats": samples if raw is None else samples[-raw:] if raw else []}
    if summary:
        body["summary"] = cells_for(samples)
    if batch is not None:
        body["batch"] = batch
    if app is not None:
        body["app"] = app
    if dropped:
        body["dropped"] = dropped
    return body


def resource_body(pod: str, *, cpu: float = 25.0, memory: float = 100e6, limit: float | None = 500e6,
                  at: float = T0) -> dict[str, Any]:
    container = {"cgroup": "v2", "cpu_cores_used": cpu / 100.0, "cpu_limit_cores": 1.0, "cpu_percent": cpu,
                 "memory_usage": memory, "memory_limit": limit}
    return {"pod": pod, "resource": {"time": at * 1000, "free_memory": 4e9, "total_memory": 8e9,
                                     "cpus": [], "cpu_percent": 50.0, "cpu_percent_per_core": [40.0, 60.0],
                                     "memory": {"total": 8e9, "available": 4e9, "used": 4e9, "percent": 50.0},
                                     "container": container}}


def random_cell(rng: random.Random) -> Traffic:
    """A route cell of up to 40 exchanges, some failed, latencies spread over the histogram."""
    cell = Traffic()
    cell.count = rng.randint(0, 40)
    if cell.count:
        cell.failures = rng.randint(0, cell.count)
        cell.status = pack_status({"2xx": cell.count - cell.failures, "5xx": cell.failures})
        cell.hist = pack_pairs([[rng.randint(0, OVERFLOW), 1] for _ in range(cell.count)])
        cell.low = rng.lognormvariate(1, 1)
        cell.high = cell.low + rng.lognormvariate(2, 1.5)
        cell.total = cell.count * (cell.low + cell.high) / 2 * rng.uniform(0.9, 1.1)
        cell.bytes_in, cell.bytes_out = rng.randint(0, 10**6), rng.randint(0, 10**9)
    return cell


def make_store(clock: FakeClock, **kwargs: Any) -> PodStore:
    """A store on a fake clock, with the bounds the store tests assume (an hour kept, stale at 15 s)."""
    return PodStore(retention=3600, stale_after=15, drop_after=600, clock=clock, **kwargs)


def post(store: PodStore, body: dict[str, Any]) -> Any:
    """A POST /stats body, checked as the server checks it, into `store`."""
    return store.ingest_stats(parse_stats(body))


@dataclass
class Running:
    app: DashboardApplication
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def fetch(self, path: str, method: str = "GET", body: Any = None, *, headers: dict[str, str] | None = None,
                    raw: bytes | None = None) -> HTTPResponse:
        sent_headers = {"Content-Type": "application/json"} if body is not None else {}
        sent_headers.update(headers or {})
        payload = raw if raw is not None else (None if body is None else ujson.dumps(body).encode())
        if method == "POST" and payload is None:
            payload = b""
        return await AsyncHTTPClient().fetch(self.url + path, method=method, body=payload, headers=sent_headers,
                                             raise_error=False, follow_redirects=False, request_timeout=10)

    async def post(self, path: str, body: Any, **kwargs: Any) -> HTTPResponse:
        return await self.fetch(path, "POST", body, **kwargs)

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        response = await self.fetch(path, **kwargs)
        assert response.code == 200, (response.code, response.body[:300])
        return ujson.loads(response.body)


@asynccontextmanager
async def running(config: DashboardConfig | None = None, clock: FakeClock | None = None, *,
                  start: bool = True, **settings: Any) -> AsyncIterator[Running]:
    """A real dashboard on 127.0.0.1 for the length of the block, stopped (history written) after."""
    config = config or DashboardConfig(data=":memory:")
    port = free_port()
    config = dataclasses.replace(config, port=port, host="127.0.0.1")
    app = make_app(config, clock or FakeClock(), start=start, **settings)
    server = listen(app, port)
    try:
        yield Running(app, port)
    finally:
        server.stop()
        await app.dashboard.stop()
        await server.close_all_connections()


async def stuck_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake, then never another read (with a small receive buffer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    reader._transport.pause_reading()  # type: ignore[attr-defined]  # never read again
    return reader, writer
