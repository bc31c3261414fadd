"""The page and the dashboard against hostile pages and names, in real Chromium (issue 16).

A page on another origin tries to store pods without a token (a no-cors fetch
of a Blob, `navigator.sendBeacon`, a JSON POST that needs a preflight); a page
reached through a rebound host name tries to read the dashboard; a pod whose
name holds a right-to-left override tries to read as something else. Real
`python -m app --mode dashboard` processes and a real attacker's web server,
all on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import (  # noqa: F401 - fixtures
    CHROMIUM,
    LAUNCH_ARGS,
    VIEWPORT,
    PageWatch,
    chromium_fixture,
    open_page_fixture,
)
from tests.conftest import AppProcess, free_port
from tests.fault_support import fetch, metric_value
from tests.test_page import LIVE, Dashboard, card, exchange

pytestmark = pytest.mark.browser

REBOUND = "rebound.test"  # resolved to 127.0.0.1 by the browser only (--host-resolver-rules)


@pytest.fixture(name="dashboard")
def dashboard_fixture(run_app: Callable[..., AppProcess]) -> Callable[[], Dashboard]:
    def start() -> Dashboard:
        port = free_port()
        proc = run_app(["--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port), "--data", ":memory:"],
                       wait_ports=[port])
        return Dashboard(proc, port)

    return start


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[str]:
    """Another origin: a plain web server on 127.0.0.1 serving one empty page."""
    (tmp_path / "index.html").write_text("<!doctype html><title>elsewhere</title><p>nothing to see</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def metrics(d: Dashboard) -> str:
    return fetch(d.port, "/metrics").body.decode()


def test_a_page_on_another_origin_cannot_store_pods(dashboard: Callable[[], Dashboard],
                                                     open_page: Callable[..., PageWatch], attacker: str) -> None:
    """With no token (the default), no-cors and beacon POSTs stored pods: a POST with no Content-Type was taken."""
    d = dashboard()
    watch = open_page(attacker)
    outcome = watch.page.evaluate("""async (target) => {
        const body = (pod) => JSON.stringify({pod, stats: [], resource: {}});
        const tries = {};
        const attempt = async (name, run) => {
            try { tries[name] = await run(); } catch (e) { tries[name] = 'failed: ' + e.name; }
        };
        await attempt('no-cors blob stats', () => fetch(target + 'stats', {method: 'POST', mode: 'no-cors',
            body: new Blob([body('blob-1-x')])}).then((r) => r.type));
        await attempt('no-cors blob resources', () => fetch(target + 'resources', {method: 'POST', mode: 'no-cors',
            body: new Blob([body('blob-2-x')])}).then((r) => r.type));
        await attempt('no-cors text', () => fetch(target + 'stats', {method: 'POST', mode: 'no-cors',
            body: body('text-1-x')}).then((r) => r.type));
        tries['beacon blob'] = navigator.sendBeacon(target + 'stats', new Blob([body('beacon-1-x')]));
        tries['beacon text'] = navigator.sendBeacon(target + 'resources', body('beacon-2-x'));
        // application/json cross-site needs a preflight, which the dashboard never grants.
        await attempt('cors json', () => fetch(target + 'stats', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: body('json-1-x')}).then((r) => r.status));
        await new Promise((done) => setTimeout(done, 1000));  // beacons go out in the background
        return tries;
    }""", d.url)
    assert outcome["no-cors blob stats"] == "opaque" and outcome["beacon blob"] is True, outcome
    assert outcome["cors json"] == "failed: TypeError", outcome  # the preflight was refused: nothing sent

    assert fetch(d.port, "/stats").json() == [] and fetch(d.port, "/resources").json() == []
    text = metrics(d)
    refused = metric_value(text, "mothership_ingest_requests_total", outcome="unsupported_type")
    assert refused == 5, text  # each attempt arrived, and each was refused for its type
    assert metric_value(text, "mothership_ingest_requests_total", outcome="saved") == 0


def test_a_rebound_host_name_gets_nothing(dashboard: Callable[[], Dashboard], chromium: Any) -> None:
    """DNS rebinding: the attacker's name resolves to the dashboard; the browser then calls it same-origin."""
    d = dashboard()
    d.report("secret-1-x", [exchange("/orders")])
    browser = chromium.browser_type.launch(executable_path=str(CHROMIUM),
                                           args=[*LAUNCH_ARGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"])
    try:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        response = page.goto(f"http://{REBOUND}:{d.port}/")
        assert response is not None and response.status == 421
        assert "secret-1-x" not in page.content()
        seen = page.evaluate("""async () => {
            const overview = await fetch('/api/overview');
            const socket = await new Promise((done) => {
                const ws = new WebSocket('ws://' + location.host + '/ws');
                ws.onmessage = (m) => done('message: ' + String(m.data).slice(0, 200));
                ws.onerror = () => done('error');
            });
            return {status: overview.status, body: await overview.text(), socket};
        }""")
        assert seen["status"] == 421 and "secret-1-x" not in seen["body"], seen
        assert seen["socket"] == "error", seen
        # The same browser, by a name the dashboard is known by, is served.
        assert page.goto(f"http://localhost:{d.port}/api/overview").status == 200
        assert "secret-1-x" in page.content()
    finally:
        with contextlib.suppress(Exception):
            browser.close()
    assert metric_value(metrics(d), "mothership_http_refused_requests_total", reason="wrong_host") >= 3


BIDI_POD = "zz-\u202eevil-no-pdf-1-x"
BIDI_PATH = "/files/\u2066report\u2069\u200b.pdf\u202e"


def test_bidirectional_and_invisible_characters_show_escaped(dashboard: Callable[[], Dashboard],
                                                              open_page: Callable[..., PageWatch]) -> None:
    """A pod `zz-\\u202Eevil-no-pdf` read "zz-fdp-on-live" on the page."""
    d = dashboard()
    watch = open_page(d.url)
    watch.wait_for(LIVE)
    d.report(BIDI_POD, [exchange(BIDI_PATH, ms=1500, status=500)])
    watch.wait_for(f"() => {card(BIDI_POD)}")
    watch.wait_for("() => document.querySelectorAll('#tail-body .col-path').length > 0")
    watch.settle(1.5)
    shown = watch.page.evaluate(f"""() => ({{
        title: {card(BIDI_POD)}.querySelector('.card-title').textContent,
        text: document.body.innerText,
        titles: [...document.querySelectorAll('[title]')].map((n) => n.getAttribute('title')).join(' '),
        options: [...document.querySelectorAll('option')].map((o) => o.textContent).join(' '),
        tail: [...document.querySelectorAll('#tail-body .col-path')].map((n) => n.textContent),
    }})""")
    assert shown["title"] == "zz-\\u202Eevil-no-pdf-1-x"
    assert "/files/\\u2066report\\u2069\\u200B.pdf\\u202E" in shown["tail"]
    assert "\\u202Eevil-no-pdf" in shown["options"]
    for where in ("text", "titles", "options"):
        assert not any(c in shown[where] for c in "\u202e\u2066\u2069\u200b"), where
    assert watch.problems() == []
