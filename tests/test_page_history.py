"""The page's history in a real browser: 6 h / 24 h / 7 d windows, drag-to-zoom, a past range's routes table.

A history file is written by the store itself (two hours of one app's pods under a
fake clock ending now), then a real dashboard process serves it to headless Chromium.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import PageWatch, chromium_fixture, open_page_fixture  # noqa: F401 - fixtures
from tests.conftest import AppProcess, free_port
from tests.history_support import Feed

pytestmark = pytest.mark.browser

LIVE = "() => window.__mothership && window.__mothership.state === 'live' && window.__mothership.snapshots >= 1"
HOURS = 2


@pytest.fixture
def history_dashboard(run_app: Callable[..., AppProcess], tmp_path: Path) -> str:
    """A dashboard on a file holding the last two hours of two `shop` pods; its URL."""
    path = tmp_path / "history.sqlite3"
    now = int(time.time())
    feed = Feed(path, start=now - HOURS * 3600, pods=("shop-0-x", "shop-1-x"))
    feed.run(HOURS * 3600 - 5)
    feed.close()
    port = free_port()
    run_app(["--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port), "--data", str(path),
             "--retention", "7d", "--drop-after", "7d"], wait_ports=[port])
    return f"http://127.0.0.1:{port}/"


def drag(watch: PageWatch, selector: str, start: float, end: float) -> None:
    """Press on the chart at `start` of its width, move to `end`, let go."""
    box = watch.page.locator(selector).bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    mouse = watch.page.mouse
    mouse.move(box["x"] + box["width"] * start, y)
    mouse.down()
    mouse.move(box["x"] + box["width"] * end, y, steps=8)
    mouse.up()


def test_long_windows_zoom_and_a_past_range_s_routes(history_dashboard: str,
                                                      open_page: Callable[..., PageWatch]) -> None:
    watch = open_page(history_dashboard + "#window=21600")
    watch.wait_for(LIVE)
    # Six hours from history: the two hours written show, at one point a minute.
    watch.wait_for("() => window.__mothership.window === 21600 && window.__mothership.chartValues >= 100")
    page = watch.page
    assert page.locator("#charts-mode").text_content() == "History"
    assert page.locator('[data-window="21600"]').get_attribute("aria-pressed") == "true"

    page.click('[data-window="604800"]')
    watch.wait_for("() => window.__mothership.window === 604800 && window.__mothership.chartValues >= 6")

    page.click('[data-window="86400"]')
    watch.wait_for("() => window.__mothership.window === 86400 && window.__mothership.chartValues >= 50")
    drag(watch, "#chart-latency", 0.80, 0.95)  # the last part of the day: within the two hours written
    chosen = watch.wait_for("() => window.__mothership.range")
    assert 600 < chosen["end"] - chosen["start"] < 86400 * 0.2
    assert chosen["end"] <= time.time() + 1
    assert page.locator("#range-bar").is_visible() and "back to live" in page.locator("#range-bar").inner_text()
    # The chart now spans the range, with its points from history; the routes table is that range's.
    watch.wait_for("() => window.__mothership.chartValues > 0 && window.__mothership.routesRange === 4")
    page.locator("#routes").scroll_into_view_if_needed()  # rows are drawn once seen
    rows = watch.wait_for("() => { const t = [...document.querySelectorAll('#routes-body .drow .col-route')]"
                          ".map((c) => c.textContent).sort(); return t.every(Boolean) && t; }")
    assert rows == [f"/r{k}/{{id}}" for k in range(4)]
    assert "chosen range" in page.locator("#routes-range").inner_text()
    assert page.locator('[aria-pressed="true"][data-window]').count() == 0
    assert "from=" in page.evaluate("() => location.hash")

    page.click("#range-reset")
    watch.wait_for("() => window.__mothership.range === null")
    assert not page.locator("#range-bar").is_visible()
    page.click('[data-window="300"]')
    watch.wait_for("() => window.__mothership.window === 300")
    assert page.locator("#charts-mode").text_content() == "Live"
    assert watch.problems() == []


def test_without_history_a_range_says_so(run_app: Callable[..., AppProcess],
                                         open_page: Callable[..., PageWatch]) -> None:
    port = free_port()
    run_app(["--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port), "--data", ":memory:"],
            wait_ports=[port])
    now = int(time.time())
    watch = open_page(f"http://127.0.0.1:{port}/#from={now - 600}&to={now - 300}")
    watch.wait_for(LIVE)
    watch.wait_for("() => document.getElementById('routes-range').textContent.includes('no history')")
    live: dict[str, Any] = watch.live()
    assert live["range"] == {"start": now - 600, "end": now - 300}
    # The browser logs the 400s themselves (what the page shows instead is checked above); nothing else.
    assert [p for p in watch.problems() if "status of 400" not in p] == []
