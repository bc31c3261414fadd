"""Windows up to the retention over HTTP and the WebSocket, from a real dashboard serving a history file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import ujson
from tornado.websocket import websocket_connect

from app.dashboard.tiers import DAY
from app.options import DashboardConfig
from tests.dashboard_support import FakeClock, running
from tests.history_support import Feed


def history_file(path: Path, seconds: int) -> Feed:
    """`seconds` of three pods' history written to `path`, as a dashboard would have left it."""
    feed = Feed(path, retention=7 * DAY)
    feed.run(seconds)
    return feed


@pytest.mark.gen_test(timeout=120)
async def test_long_windows_and_past_ranges_over_http(io_loop: Any, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    feed = history_file(path, 3 * 3600)
    now = int(feed.clock())
    want = {window: await feed.lookback.series("app:shop", window) for window in (6 * 3600, DAY, 7 * DAY)}
    feed.close()
    config = DashboardConfig(data=str(path), retention=7 * DAY)
    async with running(config, FakeClock(now)) as dash:
        for window, series in want.items():
            got = await dash.get_json(f"/api/series?scope=app:shop&window={window}")
            assert got == series and got["step"] == {6 * 3600: 60, DAY: 120, 7 * DAY: 1200}[window]
            assert sum(v for v in got["rps"]["2xx"] if v) > 0
        past = await dash.get_json(f"/api/series?scope=all&window=3600&end={now - 3600}")
        assert past["end"] == now - 3600 and past["t"][-1] < now - 3600 and any(past["p95"])
        for query, words in (("window=604801", "from 60 to 604800"), ("window=abc", "whole number of seconds"),
                             ("window=30", "from 60"), (f"window=3600&end={now - 8 * DAY}", "within the retention"),
                             ("window=3600&end=soon", "epoch seconds")):
            response = await dash.fetch(f"/api/series?scope=all&{query}")
            assert response.code == 400 and words in ujson.loads(response.body)["error"], query
        assert (await dash.fetch("/api/series?scope=pod:never&window=86400")).code == 404
        routes = await dash.get_json(f"/api/routes?start={now - 7200}&end={now - 3600}")
        assert {r["app"] for r in routes["routes"]} == {"shop", "cart"} and routes["step"] == 60
        assert all(r["count"] > 0 and r["p95"] is not None for r in routes["routes"])
        for query in ("start=x&end=1", f"start={now}&end={now - 60}", f"start={now - 9 * DAY}&end={now}"):
            assert (await dash.fetch(f"/api/routes?{query}")).code == 400, query


@pytest.mark.gen_test(timeout=120)
async def test_a_live_hour_comes_from_the_archive_over_the_websocket(io_loop: Any, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    feed = history_file(path, 2 * 3600)
    now = int(feed.clock())
    want = await feed.lookback.series("pod:shop-0-x", 3600)
    feed.close()
    config = DashboardConfig(data=str(path), retention=DAY)
    async with running(dataclasses.replace(config), FakeClock(now)) as dash:
        ws = await websocket_connect(dash.ws_url)
        try:
            assert ujson.loads(await ws.read_message())["type"] == "snapshot"
            await ws.write_message(ujson.dumps({"type": "subscribe", "scope": "pod:shop-0-x", "window": 3600}))
            message = ujson.loads(await ws.read_message())
        finally:
            ws.close()
    assert message["type"] == "series" and message["data"] == want
    assert message["data"]["step"] == 10 and sum(1 for v in message["data"]["p50"] if v is not None) > 300
