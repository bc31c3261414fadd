"""The live page in a real browser: headless Chromium against a real dashboard process.

Every test starts `python -m app --mode dashboard` (and, where traffic is
needed, the sample app behind a real sidecar) on 127.0.0.1 and drives the page
through Playwright's sync API; data reaches the dashboard over real HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser_support import PageWatch, chromium_fixture, open_page_fixture  # noqa: F401 - fixtures
from tests.conftest import ROOT, AppProcess, app_env, free_port
from tests.conftest import sample_app as start_sample_app

pytestmark = pytest.mark.browser

HOSTILE_PATH = "/<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "/<script>window.__xss=1</script>"
HOSTILE_POD = "pwn-<img src=x onerror=alert(2)>-1-x"
SCRIPTS = 13  # the <script src> tags of templates/index.html
MiB = 1024 * 1024

LIVE = "() => window.__mothership && window.__mothership.state === 'live' && window.__mothership.snapshots >= 1"


# --- a dashboard and real HTTP clients ------------------------------------------------------------------


@dataclass
class Dashboard:
    proc: AppProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        assert response.status == 200, f"POST {path}: {response.status} {payload[:300]!r}"
        return dict(json.loads(payload))

    def report(self, pod: str, samples: list[dict[str, Any]], *, dropped: int = 0) -> None:
        self.post("/stats", {"pod": pod, "stats": samples, "dropped": dropped})

    def resources(self, pod: str, *, memory: int = 128 * MiB, limit: int | None = 512 * MiB,
                  cores: tuple[float, ...] = (20.0, 40.0)) -> None:
        self.post("/resources", {"pod": pod, "resource": {
            "time": time.time() * 1000, "free_memory": 8 << 30, "total_memory": 16 << 30,
            "cpus": [{"model": "test", "speed": 2000, "times": {"user": 1, "nice": 0, "sys": 1, "idle": 9, "irq": 0}}
                     for _ in cores],
            "cpu_percent": sum(cores) / len(cores), "cpu_percent_per_core": list(cores),
            "load_average": [0.5, 0.4, 0.3],
            "memory": {"total": 16 << 30, "available": 8 << 30, "used": 8 << 30, "percent": 50.0},
            "container": {"cgroup": "v2", "cpu_usage_seconds": 12.0, "cpu_cores_used": 0.3, "cpu_limit_cores": 1.0,
                          "cpu_percent": 30.0, "memory_usage": memory, "memory_limit": limit,
                          "memory_percent": None if limit is None else 100.0 * memory / limit},
            "processes": None, "sidecar": {"cpu_percent": 1.0, "rss": 30 * MiB},
        }})


def exchange(path: str, *, status: int = 200, ms: float = 10.0, method: str = "GET", route: str | None = None,
             ago: float = 0.0) -> dict[str, Any]:
    """One exchange in the wire shape of app/core/wire.py, started `ago` seconds before now."""
    return {"endpoint": path, "route": route or path, "method": method,
            "response": {"status": status, "message": "OK" if status < 400 else "Error"},
            "time": ms, "ttfb": ms / 2, "started": (time.time() - ago) * 1000.0, "file": False,
            "bytes_in": 80, "bytes_out": 512, "probe": False, "error": None}


@pytest.fixture
def dashboard(run_app: Callable[..., AppProcess]) -> Callable[..., Dashboard]:
    """`dashboard(*flags, port=None)` starts `python -m app --mode dashboard` with no history file."""

    def start(*flags: str, port: int | None = None) -> Dashboard:
        port = port or free_port()
        proc = run_app(["--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port), "--data", ":memory:",
                        *flags], wait_ports=[port])
        return Dashboard(proc, port)

    return start


@pytest.fixture
def sample_app() -> Iterator[int]:
    """The project's sample application on a free port: the app behind the sidecar."""
    with start_sample_app("--seed", "7") as (_, port):
        yield port


class Traffic(threading.Thread):
    """Real HTTP requests through the sidecar, a few per 100 ms, until stopped (at most `limit` seconds)."""

    PATHS = ("/", "/users/42", "/users/7", "/api/items", "/slow?ms=120", "/fail", "/static/app.js")

    def __init__(self, port: int, limit: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.deadline = time.monotonic() + limit
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            path = self.PATHS[self.sent % len(self.PATHS)]
            try:
                conn.request("GET", path)
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.sent += 1
            self.stopping.wait(0.03)
        conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)


def card(pod: str) -> str:
    """A JS expression for the card of `pod` (matched on data-pod, whatever characters the name has)."""
    return f"[...document.querySelectorAll('.card[data-pod]')].find((c) => c.dataset.pod === {json.dumps(pod)})"


def chart_total(watch: PageWatch, canvas: str) -> float:
    """The sum of every number a chart currently draws (its points are {x, y} objects)."""
    return float(watch.page.evaluate(
        """(id) => Chart.getChart(id).data.datasets.reduce(
             (sum, d) => sum + d.data.reduce((s, p) => s + (typeof p.y === 'number' ? p.y : 0), 0), 0)""", canvas))


# --- the tests ------------------------------------------------------------------------------------------


class _Markup(HTMLParser):
    """Collects what a strict CSP would refuse: inline scripts, style attributes, <style>, on* handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        if "style" in names:
            self.inline.append(f"style= on <{tag}>")
        self.inline += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"inline script {data.strip()[:40]!r}")


def test_page_loads_from_its_own_origin_only(dashboard: Callable[..., Dashboard],
                                             open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    d.report("shop-1-abcde", [exchange("/users/{id}", ms=12), exchange("/", ms=3)])
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card('shop-1-abcde')}")
    watch.wait_for("() => window.__mothership.chartPoints > 0")
    watch.settle(1.0)

    origin = f"127.0.0.1:{d.port}"
    assert any(u.endswith("/") and urlsplit(u).path == "/" for u in watch.requests)
    assert any("/static/chart.umd.min.js" in u for u in watch.requests), watch.requests
    assert any("/static/app.js" in u for u in watch.requests), watch.requests
    foreign = [u for u in watch.requests + watch.sockets
               if urlsplit(u).scheme not in ("http", "ws") or urlsplit(u).netloc != origin]
    assert foreign == [], f"requests left the page's origin: {foreign}"
    assert watch.sockets == [f"ws://{origin}/ws"]
    assert watch.problems() == []
    assert watch.live()["inWorker"] is True  # the socket and JSON.parse run off the main thread

    csp = watch.response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    markup = _Markup()
    markup.feed(watch.response.text())
    assert markup.inline == []
    assert len(markup.scripts) == SCRIPTS
    assert all((s.get("src") or "").startswith("/static/") for s in markup.scripts), markup.scripts


def test_traffic_through_a_real_sidecar_fills_cards_and_charts_and_keeps_them_moving(
        dashboard: Callable[..., Dashboard], run_app: Callable[..., AppProcess], sample_app: int,
        open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    pod = "shop-7d9f4-x2k9q"
    port, admin = free_port(), free_port()
    run_app(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
             "--target-port", str(sample_app), "--dashboard", d.url, "--pod", pod,
             "--stats-interval", "0.3", "--resources-interval", "0.3", "--grace-period", "1"], wait_ports=[port, admin])
    traffic = Traffic(port)
    traffic.start()
    try:
        watch = open_page(d.url)
        watch.wait_for(LIVE)
        # The article's card: routes with hits, avg and p95 and an alert dot; memory and per-core load.
        watch.wait_for(f"() => {card(pod)} && [...{card(pod)}.querySelectorAll('.card-routes tbody tr')]"
                       ".filter((tr) => Number(tr.children[2].textContent) > 0).length >= 4", timeout=40)
        rows = watch.page.evaluate(f"""() => [...{card(pod)}.querySelectorAll('.card-routes tbody tr')].map((tr) => ({{
            route: tr.querySelector('.path').textContent, hits: tr.children[2].textContent,
            avg: tr.children[3].textContent, p95: tr.children[4].textContent,
            dot: tr.querySelector('.dot').className}}))""")
        routes = {r["route"] for r in rows}
        assert "/users/{id}" in routes, rows  # templated by the sidecar
        for row in rows:
            if int(row["hits"]) > 0:  # a route the last 60 s did not see has no latency to show
                assert row["avg"].endswith(("ms", "s")) and row["p95"].endswith(("ms", "s")), row
                assert any(level in row["dot"] for level in ("level-ok", "level-warn", "level-bad")), row
        watch.wait_for(f"() => {card(pod)}.querySelectorAll('.core').length >= 1", timeout=10)
        memory = watch.page.evaluate(f"() => {card(pod)}.querySelector('.meter-val').textContent")
        assert "B" in memory, memory  # a size: MiB, GiB...
        assert watch.page.evaluate(f"() => {card(pod)}.dataset.stale") == "false"

        # The overview row for the pod and its app, and the charts.
        watch.wait_for(f"() => [...document.querySelectorAll('.ov-pod')].some((r) => r.dataset.rowPod === '{pod}')")
        watch.wait_for("() => window.__mothership.chartPoints > 0")
        watch.wait_for("() => Chart.getChart('chart-rps').data.datasets.some((d) => d.data.some((p) => p.y > 0))",
                       timeout=15)
        watch.wait_for("() => Chart.getChart('chart-latency').data.datasets[1].data.some((p) => p.y > 0)", timeout=15)

        # ...and they keep moving: more updates, the charts' newest point advances.
        before = watch.live()
        newest = "() => Math.max(...Chart.getChart('chart-rps').data.datasets.flatMap((d) => d.data.map((p) => p.x)))"
        last_t = watch.page.evaluate(newest)
        watch.wait_for("(n) => window.__mothership.updates >= n + 2", arg=before["updates"], timeout=10)
        watch.wait_for(f"(t) => ({newest})() > t", arg=last_t, timeout=10)
        assert watch.live()["series"] > before["series"]
        watch.wait_for("() => document.querySelectorAll('#tail-body .drow').length > 0")
        assert chart_total(watch, "chart-rps") > 0
        assert watch.problems() == []
    finally:
        traffic.stop()
    assert traffic.sent > 0


def test_without_web_workers_the_page_keeps_its_socket_itself(dashboard: Callable[..., Dashboard],
                                                                open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    d.report("shop-1-abcde", [exchange("/a", ms=5, ago=20)])
    watch = open_page(d.url, init_script="delete window.Worker;")
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card('shop-1-abcde')}")
    watch.wait_for("() => window.__mothership.chartPoints > 0")
    live = watch.live()
    assert live["inWorker"] is False and live["updateTimes"], live
    assert watch.problems() == []


def test_a_pod_that_stops_reporting_greys_out(dashboard: Callable[..., Dashboard],
                                              open_page: Callable[..., PageWatch]) -> None:
    # 3 s, not less: on a loaded machine the page or a report can lag a second behind, and the
    # pod that keeps reporting must not turn stale meanwhile.
    d = dashboard("--stale-after", "3")
    d.report("gone-1-abcde", [exchange("/orders", ms=20)])
    d.report("alive-1-abcde", [exchange("/orders", ms=20)])
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card('gone-1-abcde')} && {card('gone-1-abcde')}.dataset.stale === 'false'")
    deadline = time.monotonic() + 15
    stale = False
    while not stale and time.monotonic() < deadline:
        d.report("alive-1-abcde", [exchange("/orders", ms=20)])  # this one keeps reporting
        watch.settle(0.3)
        stale = watch.page.evaluate(f"() => {card('gone-1-abcde')}.dataset.stale === 'true'")
    assert stale, "the silent pod's card never turned stale"
    assert watch.page.evaluate(f"() => {card('gone-1-abcde')}.classList.contains('is-stale')")
    assert watch.page.evaluate(f"() => getComputedStyle({card('gone-1-abcde')}).opacity") != "1"
    assert watch.page.evaluate(f"() => {card('alive-1-abcde')}.dataset.stale") == "false"
    row = "[...document.querySelectorAll('.ov-pod')].find((r) => r.dataset.rowPod === 'gone-1-abcde')"
    assert watch.page.evaluate(f"() => {row}.classList.contains('is-stale')")
    assert watch.problems() == []


def test_a_pods_namespace_shows_beside_its_name_when_its_sidecar_says_it(
        dashboard: Callable[..., Dashboard], open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    d.post("/stats", {"pod": "shop-1-abcde", "namespace": "shop-prod", "stats": [exchange("/orders", ms=20)]})
    d.report("old-1-abcde", [exchange("/orders", ms=20)])  # a sidecar that says no namespace
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card('shop-1-abcde')} && {card('old-1-abcde')}")
    shown = watch.page.evaluate(f"""() => [{card('shop-1-abcde')}, {card('old-1-abcde')}].map((c) => {{
        const ns = c.querySelector('.card-ns');
        return [ns.textContent, ns.hidden, ns.getBoundingClientRect().width > 0,
                c.querySelector('.card-title').textContent];
    }})""")
    assert shown == [["shop-prod", False, True, "shop-1-abcde"], ["", True, False, "old-1-abcde"]]
    assert watch.problems() == []


def test_the_page_reconnects_by_itself_after_a_dashboard_restart(dashboard: Callable[..., Dashboard],
                                                                 open_page: Callable[..., PageWatch]) -> None:
    first = dashboard()
    first.report("before-1-abcde", [exchange("/a", ms=5)])
    watch = open_page(first.url)
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card('before-1-abcde')}")

    first.proc.stop()
    state = watch.wait_for("() => ['reconnecting', 'offline'].includes(document.getElementById('live-status')"
                           ".dataset.state) && document.getElementById('live-status').dataset.state", timeout=10)
    assert state in ("reconnecting", "offline")
    assert "live" not in watch.page.inner_text("#live-status")

    second = dashboard(port=first.port)  # same port, fresh state
    second.report("after-1-abcde", [exchange("/b", ms=5)])
    watch.wait_for("() => document.getElementById('live-status').dataset.state === 'live'", timeout=20)
    watch.wait_for(f"() => {card('after-1-abcde')}", timeout=10)
    live = watch.live()
    assert live["reconnects"] >= 1 and live["snapshots"] >= 2
    # The new snapshot replaced the old view: the first dashboard's pod is gone.
    assert watch.page.evaluate(f"() => {card('before-1-abcde')} === undefined")
    assert watch.page.inner_text("#live-status").strip() == "live"
    assert watch.page_errors == [] and watch.dialogs == []


def test_hostile_paths_and_pod_names_show_as_text_and_never_run(dashboard: Callable[..., Dashboard],
                                                                open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    d.report(HOSTILE_POD, [exchange(HOSTILE_PATH, ms=1500, status=500), exchange(HOSTILE_SCRIPT, ms=5)])
    watch.wait_for(f"() => {card(HOSTILE_POD)}")
    watch.wait_for("(p) => [...document.querySelectorAll('#tail-body .col-path')].some((c) => c.textContent === p)",
                   arg=HOSTILE_PATH)
    watch.settle(1.5)  # a few more updates re-render everything

    texts = watch.page.evaluate(f"""() => ({{
        cardRoutes: [...{card(HOSTILE_POD)}.querySelectorAll('.card-routes .path')].map((n) => n.textContent),
        cardTitle: {card(HOSTILE_POD)}.querySelector('.card-title').textContent,
        tailPaths: [...document.querySelectorAll('#tail-body .col-path')].map((n) => n.textContent),
        routeTable: [...document.querySelectorAll('#routes-body .path')].map((n) => n.textContent),
        images: document.querySelectorAll('img').length,
        scripts: document.querySelectorAll('script').length,
        xss: window.__xss,
    }})""")
    assert HOSTILE_PATH in texts["cardRoutes"] and HOSTILE_SCRIPT in texts["cardRoutes"]
    assert texts["cardTitle"] == HOSTILE_POD
    assert HOSTILE_PATH in texts["tailPaths"] and HOSTILE_SCRIPT in texts["tailPaths"]
    assert HOSTILE_PATH in texts["routeTable"]
    assert texts["images"] == 0, "markup from traffic became an element"
    assert texts["scripts"] == SCRIPTS
    assert texts["xss"] is None
    assert watch.dialogs == [] and watch.page_errors == []
    assert watch.problems() == []


def test_card_details_sorting_filters_and_window_choice(dashboard: Callable[..., Dashboard],
                                                        open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    pod = "shop-2-qwert"
    # Started 20 s ago, as a sidecar's batch may be: the server's per-route windows count whole slots.
    d.report(pod, [exchange("/fast", ms=5, ago=20) for _ in range(30)]
             + [exchange("/mid", ms=300, ago=20) for _ in range(20)]
             + [exchange("/slow", ms=2500, ago=20) for _ in range(10)] + [exchange("/boom", ms=8, status=503, ago=20)],
             dropped=7)
    d.resources(pod, memory=128 * MiB, limit=512 * MiB, cores=(20.0, 40.0, 60.0, 95.0))
    d.report("other-1-zzzzz", [exchange("/other", ms=3, ago=20)])
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    watch.wait_for(f"() => {card(pod)} && {card(pod)}.querySelectorAll('.card-routes tbody tr').length === 4"
                   f" && !{card(pod)}.querySelector('.card-routes .dot.level-none')")

    dots = watch.page.evaluate(f"""() => Object.fromEntries([...{card(pod)}.querySelectorAll('.card-routes tbody tr')]
        .map((tr) => [tr.querySelector('.path').textContent, tr.querySelector('.dot').className]))""")
    assert "level-ok" in dots["/fast"] and "level-warn" in dots["/mid"] and "level-bad" in dots["/slow"], dots
    badge = watch.page.evaluate(f"() => {card(pod)}.querySelector('.badge-dropped')")
    assert badge is not None
    assert watch.page.evaluate(f"() => {card(pod)}.querySelector('.badge-dropped').textContent") == "7 dropped"
    watch.wait_for(f"() => {card(pod)}.querySelectorAll('.core').length === 4")
    memory = watch.page.evaluate(f"""() => ({{text: {card(pod)}.querySelector('.meter-val').textContent,
        width: {card(pod)}.querySelector('.meter .fill').style.width}})""")
    assert memory["text"] == "128 MiB / 512 MiB (25%)", memory
    assert memory["width"] == "25%", memory  # the bar is the share of the limit

    # The cards filter by pod or app name.
    watch.page.fill("#card-filter", "no-such-pod")
    watch.wait_for("() => document.querySelectorAll('.card[data-pod]').length === 0")
    assert watch.page.inner_text("#cards-count") == "0 of 2 pods"
    watch.page.fill("#card-filter", "QWERT")
    watch.wait_for(f"() => {card(pod)}")

    # The routes table sorts by a click on p95 (slowest first), then on errors.
    watch.wait_for("() => [...document.querySelectorAll('#routes-body .col-p95')]"
                   ".filter((c) => /s$/.test(c.textContent)).length === 5")  # each route has its p95, app-wide
    first_route = "(want) => document.querySelector('#routes-body .drow .path').textContent === want"
    watch.page.click("#routes [data-sort='p95']")
    watch.wait_for(first_route, arg="/slow", timeout=3)
    assert watch.page.get_attribute("#routes [data-sort='p95']", "aria-sort") == "descending"
    watch.page.click("#routes [data-sort='errors']")
    watch.wait_for(first_route, arg="/boom", timeout=3)

    # The tail filters by pod, by status, by path, and pauses.
    watch.wait_for("() => document.getElementById('tail-body').textContent.includes('/other')")
    tail_text = "() => document.getElementById('tail-body').textContent"  # innerText skips rows off screen
    watch.page.select_option("#tail-pod", pod)
    pods_shown = watch.page.evaluate("() => [...document.querySelectorAll('#tail-body .col-pod')]"
                                     ".map((c) => c.textContent)")
    assert pods_shown and set(pods_shown) == {pod}, pods_shown
    watch.page.select_option("#tail-pod", "")
    watch.page.select_option("#tail-status", "5xx")
    tail_paths = "() => [...document.querySelectorAll('#tail-body .col-path')].map((n) => n.textContent)"
    assert watch.page.evaluate(tail_paths) == ["/boom"]
    watch.page.select_option("#tail-status", "")
    watch.page.fill("#tail-route", "mid")
    watch.wait_for("() => [...document.querySelectorAll('#tail-body .col-path')]"
                   ".every((n) => n.textContent === '/mid')")
    watch.page.fill("#tail-route", "")
    watch.page.click("#tail-pause")
    frozen = watch.page.evaluate("() => document.querySelectorAll('#tail-body .drow').length")
    d.report(pod, [exchange("/later", ms=4)])
    watch.wait_for("() => /new while paused/.test(document.getElementById('tail-count').textContent)"
                   " && !/^0 /.test(document.getElementById('tail-count').textContent)")
    assert watch.page.evaluate("() => document.querySelectorAll('#tail-body .drow').length") == frozen
    assert "/later" not in watch.page.evaluate(tail_text)
    watch.page.click("#tail-pause")
    watch.wait_for("() => document.getElementById('tail-body').textContent.includes('/later')")

    # The window choice subscribes again: 15 minutes of history for this pod.
    watch.page.click(f".card[data-pod='{pod}'] .card-title")
    watch.page.click("[data-window='900']")
    watch.wait_for("() => window.__mothership.window === 900 && window.__mothership.scope === 'pod:shop-2-qwert'")
    watch.wait_for("() => window.__mothership.chartPoints > 0")
    assert watch.page.evaluate("() => location.hash") == "#scope=pod%3Ashop-2-qwert&window=900"
    assert watch.page.evaluate("() => document.getElementById('scope').value") == f"pod:{pod}"
    assert watch.problems() == []


def test_buffers_stay_bounded_however_long_the_page_runs(dashboard: Callable[..., Dashboard],
                                                         open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    sizes = watch.page.evaluate("""() => {
        const M = window.Mothership;
        // The chart buffer: a 5-minute series, then an hour of 30-second tails, one per second.
        const b = new M.SeriesBuffer();
        b.reset('all', 300);
        const series = (from, to) => {
            const t = [];
            for (let s = from; s <= to; s += 1) t.push(s);
            return {scope: 'all', window: 300, step: 1, t, rps: {'2xx': t.map((s) => s % 7)},
                    p50: t.map(() => 1), p95: t.map(() => 2), p99: t.map(() => 3), cpu: t.map(() => 4),
                    memory: t.map(() => 5), memory_limit: null};
        };
        const start = 1700000000;
        b.merge(series(start - 300, start));
        const afterFull = b.length;
        for (let now = start + 1; now <= start + 3600; now += 1) b.merge(series(now - 30, now));
        const sorted = b.t.every((t, i) => i === 0 || b.t[i - 1] < t);
        // The tail: thousands of exchanges, newest kept.
        const body = document.createElement('div');
        const controls = {pause: document.createElement('button'), pod: document.createElement('select'),
                          route: document.createElement('input'), status: document.createElement('select'),
                          count: document.createElement('span')};
        const tail = new M.LiveTail(body, controls);
        for (let i = 0; i < 5000; i += 1) {
            tail.ingest([{pod: 'p', started: i, method: 'GET', endpoint: '/x' + i, route: '/x', time: 1,
                          response: {status: 200}}]);
        }
        tail.ingest([{pod: 'p', started: 4999, method: 'GET', endpoint: '/x4999', route: '/x', time: 1,
                      response: {status: 200}}]);  // a duplicate is not kept twice
        // A batch that arrives late (older samples, newest last) still lands in time order.
        tail.ingest([{pod: 'q', started: 4700.5, method: 'GET', endpoint: '/late1', route: '/x', time: 1},
                     {pod: 'q', started: 4800.5, method: 'GET', endpoint: '/late2', route: '/x', time: 1}]);
        const inOrder = tail.buffer.every((s, i) => i === 0 || tail.buffer[i - 1].started <= s.started);
        tail.render(true);
        const liveRows = body.children.length;
        const newest = body.firstChild.textContent;
        tail.setPaused(true);  // paused, more of the buffer can be browsed
        return {afterFull, length: b.length, first: b.t[0], last: b.t[b.length - 1], sorted,
                lastRps: b.cols['2xx'][b.length - 1], tail: tail.buffer.length, keys: tail.keys.size,
                rows: liveRows, pausedRows: body.children.length, newest, inOrder};
    }""")
    assert sizes["afterFull"] == 301
    assert sizes["length"] <= 301 and sizes["last"] == 1700000000 + 3600 and sizes["first"] >= sizes["last"] - 300
    assert sizes["sorted"] and sizes["lastRps"] == (1700000000 + 3600) % 7
    assert sizes["tail"] == 500 and sizes["keys"] == 500 and sizes["inOrder"]
    assert sizes["rows"] == 25 and sizes["pausedRows"] == 200 and "/x4999" in sizes["newest"]


def test_keyed_lists_keep_order_and_move_few_nodes(dashboard: Callable[..., Dashboard],
                                                   open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    result = watch.page.evaluate("""() => {
        const c = document.createElement('div');
        let moves = 0;
        const insert = c.insertBefore.bind(c);
        c.insertBefore = (node, before) => { moves += 1; return insert(node, before); };
        let removed = 0;
        const list = new window.Mothership.dom.KeyedList(c,
            (key) => ({el: Object.assign(document.createElement('i'), {textContent: key})}), () => {},
            () => { removed += 1; });
        const show = (keys) => {
            moves = 0;
            list.render(keys, (k) => k);
            const got = [...c.children].map((n) => n.textContent).join(',');
            return got === [...new Set(keys)].join(',') ? moves : 'wrong order: ' + got;  // repeats once
        };
        const out = [show(['a', 'b', 'c', 'd', 'e']), show(['b', 'c', 'd', 'e', 'a']), show(['a', 'b', 'c', 'd', 'e']),
                     show(['x', 'a', 'c', 'y']), show(['x', 'x', 'a']), show([])];
        let random = 0;
        let seed = 7;
        const rnd = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
        for (let t = 0; t < 300; t += 1) {
            const keys = [...'abcdefghijklmnopqrst'].filter(() => rnd() < 0.7).sort(() => rnd() - 0.5);
            if (typeof show(keys) === 'string') return {out, random: 'wrong order for ' + keys};
            random += 1;
        }
        return {out, random, removed};
    }""")
    # One node moved for one item moved, new ones inserted, the rest left in place.
    assert result["out"] == [5, 1, 1, 2, 0, 0]
    assert result["random"] == 300
    assert result["removed"] > 0


def test_page_bench_runs_and_reads_the_page_s_own_timings() -> None:
    """bench/page_bench.py, briefly and small, so that it cannot rot."""
    done = subprocess.run([sys.executable, "-m", "bench.page_bench", "--duration", "4", "--every", "2", "--warmup", "2",
                           "--pods", "6", "--apps", "2", "--routes", "20"], cwd=ROOT, env=app_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "page with 6 pods and 20 routes" in out, out
    assert "work per update on the page's main thread" in out and "JSON.parse per update, in a Web Worker" in out, out
    assert "JS heap after GC" in out and "verdict:" in out, out


def test_screenshot_for_the_readme(run_app: Callable[..., AppProcess], open_page: Callable[..., PageWatch],
                                   tmp_path: Path) -> None:
    """The demo (dashboard, sample-app pods behind real sidecars, traffic) as a user first sees it."""
    port = free_port()
    run_app(["--mode", "demo", "--port", str(port), "--rate", "12"], wait_ports=[port], timeout=30)
    watch = open_page(f"http://127.0.0.1:{port}/", viewport={"width": 1440, "height": 900})
    watch.wait_for(LIVE, timeout=20)
    watch.wait_for("() => document.querySelectorAll('.card[data-pod]').length >= 3"
                   " && document.querySelectorAll('#routes-body .drow').length >= 5", timeout=40)
    watch.wait_for("() => window.__mothership.chartPoints > 0")
    # docs/screenshot.png is written when missing or with UPDATE_SCREENSHOT=1; the charts then get
    # longer to fill (SCREENSHOT_SETTLE seconds), an ordinary run only checks that a picture comes out.
    target = ROOT / "docs" / "screenshot.png"
    writing = os.environ.get("UPDATE_SCREENSHOT") == "1" or not target.exists()
    watch.settle(float(os.environ.get("SCREENSHOT_SETTLE", "20")) if writing else 3)
    shot = tmp_path / "screenshot.png"
    watch.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 30_000  # a real picture, not a blank page
    assert watch.page_errors == [] and watch.dialogs == []
    if writing:
        shutil.copyfile(shot, target)


def test_grpc_calls_and_opaque_connections_show_their_protocol_and_status(
        dashboard: Callable[..., Dashboard], open_page: Callable[..., PageWatch]) -> None:
    d = dashboard()
    pod = "orders-1-grpcx"

    def call(code: int, status: int, name: str, ms: float) -> dict[str, Any]:
        return {**exchange("/shop.v1.Orders/Get", status=status, ms=ms, method="POST", ago=20),
                "response": {"status": status, "message": name}, "protocol": "grpc", "grpc_status": code,
                "grpc_message": "" if code == 0 else "order 12 not found"}

    tls = {**exchange("api.example.com", ms=3.0, ago=20), "method": "TLS", "response": {"status": 0, "message": ""},
           "protocol": "tls", "alpn": "h2,http/1.1"}
    d.report(pod, [call(0, 200, "OK", 4.0 + i) for i in range(5)]
             + [call(5, 404, "NOT_FOUND", 900.0 + i) for i in range(2)]
             + [{**exchange("/users/1", ago=20), "protocol": "h2"}, tls])
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    grpc_row = "[...document.querySelectorAll('#routes-body .drow')].find((r) => r.querySelector('.path')" \
               ".textContent === '/shop.v1.Orders/Get')"
    watch.wait_for(f"() => {{ const r = {grpc_row}; return r && r.querySelector('.col-grpc').textContent !== ''; }}")
    row = watch.page.evaluate(f"""() => {{ const r = {grpc_row};
        return {{protocol: r.querySelector('.col-protocol').textContent, grpc: r.querySelector('.col-grpc').textContent,
                 title: r.querySelector('.col-grpc').title, level: r.querySelector('.col-grpc').className}}; }}""")
    assert row["protocol"] == "grpc" and row["grpc"] == "OK 5 \u00b7 NOT_FOUND 2", row
    assert row["title"] == "OK 5\nNOT_FOUND 2" and "level-warn" in row["level"], row
    protocols = watch.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#routes-body .drow')]
        .map((r) => [r.querySelector('.path').textContent, r.querySelector('.col-protocol').textContent]))""")
    assert protocols == {"/shop.v1.Orders/Get": "grpc", "/users/1": "h2", "api.example.com": "tls"}, protocols

    # The tail and the slowest list: the protocol beside the method, a gRPC call's code by name.
    rows = """(body) => [...document.querySelectorAll(body + ' .drow')].map((r) => ({
        protocol: r.querySelector('.col-protocol').textContent, path: r.querySelector('.col-path').textContent,
        status: r.querySelector('.col-status').textContent, klass: r.querySelector('.col-status').className,
        title: r.querySelector('.col-status').title, extra: r.querySelector('.col-extra').textContent}))"""
    watch.wait_for(f"() => ({rows})('#tail-body').length === 9")
    tail = watch.page.evaluate(rows, "#tail-body")
    by_status = {(r["protocol"], r["status"]) for r in tail}
    assert by_status == {("grpc", "OK"), ("grpc", "NOT_FOUND"), ("h2", "200"), ("tls", "\u2013")}, by_status
    missing = next(r for r in tail if r["status"] == "NOT_FOUND")
    assert "st-4xx" in missing["klass"] and missing["title"] == "gRPC 5 NOT_FOUND (HTTP 404)", missing
    assert "order 12 not found" in missing["extra"]
    opaque = next(r for r in tail if r["protocol"] == "tls")
    assert "st-conn" in opaque["klass"] and "alpn h2,http/1.1" in opaque["extra"], opaque
    watch.wait_for(f"() => ({rows})('#slowest-body').length > 0")
    slowest = watch.page.evaluate(rows, "#slowest-body")
    assert (slowest[0]["protocol"], slowest[0]["status"]) == ("grpc", "NOT_FOUND"), slowest
    assert all(r["protocol"] != "tls" for r in slowest)
    # The tail filters by protocol too.
    watch.page.fill("#tail-route", "grpc")
    watch.wait_for(f"() => ({rows})('#tail-body').length === 7")
    assert watch.page_errors == [] and watch.problems() == []


def test_grpc_calls_through_a_real_sidecar_show_as_grpc_rows_with_their_status(
        dashboard: Callable[..., Dashboard], run_app: Callable[..., AppProcess],
        open_page: Callable[..., PageWatch]) -> None:
    grpc = pytest.importorskip("grpc")  # the test extra has it
    from app.demo.grpcservice import SERVICE, InventorySettings, start_server

    d = dashboard()
    pod = "inventory-5c8d7-g4t2x"
    service_port, port, admin = free_port(), free_port(), free_port()
    server = start_server("127.0.0.1", service_port, InventorySettings(fail_rate=0.0, slow_rate=0.0, seed=3))
    try:
        run_app(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
                 "--target-port", str(service_port), "--dashboard", d.url, "--pod", pod,
                 "--stats-interval", "0.3", "--resources-interval", "0.3", "--grace-period", "1"],
                wait_ports=[port, admin])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            get = channel.unary_unary(f"/{SERVICE}/GetItem")
            for item in (b"1", b"2", b"3", b"901", b"902"):
                try:
                    get(item, timeout=10)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND
            assert len(list(channel.unary_stream(f"/{SERVICE}/Watch")(b"3", timeout=10))) == 3
        watch = open_page(d.url)
        watch.wait_for(LIVE)
        row = "[...document.querySelectorAll('#routes-body .drow')].find((r) => r.querySelector('.path')" \
              f".textContent === '/{SERVICE}/GetItem')"
        watch.wait_for(f"() => {{ const r = {row}; return r && r.querySelector('.col-grpc').textContent"
                       ".includes('NOT_FOUND'); }", timeout=30)
        cells = watch.page.evaluate(f"""() => {{ const r = {row}; return {{
            protocol: r.querySelector('.col-protocol').textContent, grpc: r.querySelector('.col-grpc').textContent,
            method: r.querySelector('.col-method').textContent}}; }}""")
        assert cells == {"protocol": "grpc", "grpc": "OK 3 \u00b7 NOT_FOUND 2", "method": "POST"}, cells
        statuses = watch.page.evaluate("""() => [...document.querySelectorAll('#tail-body .drow')].map((r) =>
            r.querySelector('.col-protocol').textContent + ' ' + r.querySelector('.col-path').textContent + ' '
            + r.querySelector('.col-status').textContent)""")
        assert f"grpc /{SERVICE}/GetItem NOT_FOUND" in statuses and f"grpc /{SERVICE}/Watch OK" in statuses, statuses
        assert watch.problems() == []
    finally:
        server.stop(grace=None).wait()
