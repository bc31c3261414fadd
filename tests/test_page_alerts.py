"""static/alerts.js in a real browser: the firing list, and app and pod dots turned into states with reason and since.

A real dashboard process gets failing traffic (and a sidecar's report of dropped samples)
over real HTTP; headless Chromium shows what its embedded alerts make of it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.browser_support import chromium_fixture, open_page_fixture  # noqa: F401 - fixtures
from tests.fault_support import RunApp, start_dashboard

pytestmark = pytest.mark.browser

LIVE = "() => window.__mothership && window.__mothership.state === 'live' && window.__mothership.snapshots >= 1"
HOSTILE_APP = "<img src=x onerror=alert(1)>"


def cell(t: int, count: int, failures: int, route: str = "/buy") -> dict[str, Any]:
    return {"t": t, "route": route, "method": "GET", "count": count, "status": {"2xx": count - failures,
            "5xx": failures}, "failures": failures, "hist": [[30, count]], "sum": 1.0 * count, "min": 1.0,
            "max": 1.0, "bytes_in": 0, "bytes_out": 0}


def test_firing_alerts_are_listed_and_mark_their_app_and_pod(run_app: RunApp, open_page: Any) -> None:
    dashboard = start_dashboard(run_app)
    watch = open_page(dashboard.url + "/")
    watch.wait_for(LIVE)
    assert watch.page.is_hidden("#alerts")  # nothing firing: no list
    now = int(time.time())
    for pod, app, dropped in (("shop-1-a", "shop", 0), ("cart-1-a", "cart", 40), ("x-1-a", HOSTILE_APP, 0)):
        failures = 50 if app != "cart" else 0
        body = {"pod": pod, "app": app, "stats": [], "summary": [cell(now, 100, failures)], "dropped": dropped}
        assert dashboard.post("/stats", json.dumps(body).encode()).status == 200
    # Evaluated every 5 s; the list and the marks follow on /ws.
    watch.wait_for("() => document.querySelectorAll('#alert-list .alert-item').length === 5", 20)
    items = watch.page.eval_on_selector_all("#alert-list .alert-item", "els => els.map(e => e.innerText)")
    assert sum("MothershipErrorBudgetBurn" in i for i in items) == 4  # shop and the hostile app, both tiers
    assert any("MothershipSidecarDroppingSamples" in i and "cart-1-a" in i for i in items)
    assert watch.page.eval_on_selector("#alerts-count", "e => e.textContent") == "5 firing"
    # The app row's dot: critical, with the reason and since when.
    shop = watch.page.wait_for_selector('[data-row-app="shop"] .dot.health-critical')
    assert shop is not None
    title = shop.get_attribute("title") or ""
    assert title.startswith("critical since ") and "shop is failing" in title
    badge = watch.page.eval_on_selector('[data-row-app="shop"] .badge-alert', "e => e.textContent")
    assert badge.startswith("critical since ")
    # The pod's card: warning for the dropped samples.
    card_dot = watch.page.wait_for_selector('article.card[data-pod="cart-1-a"] .card-head .dot.health-warning')
    assert card_dot is not None and "dropping samples" in (card_dot.get_attribute("title") or "")
    # Text only: a hostile app name is shown, never run.
    assert any(HOSTILE_APP in i for i in items)
    assert watch.dialogs == [] and watch.problems() == []
    # Recovered (much good traffic dilutes the windows): resolved, unmarked, off the list.
    for pod, app in (("shop-1-a", "shop"), ("x-1-a", HOSTILE_APP)):
        body = {"pod": pod, "app": app, "stats": [], "summary": [cell(int(time.time()), 1_000_000, 0)]}
        assert dashboard.post("/stats", json.dumps(body).encode()).status == 200
    watch.wait_for("() => document.querySelectorAll('#alert-list .alert-item').length === 1", 45)
    assert watch.page.query_selector('[data-row-app="shop"] .dot.health-critical') is None
    assert watch.page.query_selector('[data-row-app="shop"] .badge-alert') is None
    assert watch.page.query_selector('article.card[data-pod="cart-1-a"] .dot.health-warning') is not None
    assert watch.problems() == []
