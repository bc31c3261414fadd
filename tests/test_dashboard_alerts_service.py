"""The embedded alerts end to end: real sidecars and a real dashboard process tell a real Alertmanager.

An app behind a real sidecar fails half its requests: the dashboard (started with
`--alertmanager`) sends the burn alert, Alertmanager routes it to a webhook. The
dashboard is restarted: the alert is neither lost nor sent as a new one. The app then
carries a large amount of good traffic (reported as a sidecar reports it): the short
window's ratio falls under the threshold and the resolution reaches Alertmanager.
(Waiting for five real minutes of recovery would do the same; the evaluator's own tests
check those timings on a fake clock.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.alertmanager_support import alertmanager, needs_alertmanager, sink
from tests.conftest import sample_app
from tests.dashboard_support import resource_body
from tests.fault_support import RunApp, eventually, fetch, restart_dashboard, start_dashboard, start_sidecar

BURN = {"alertname": "MothershipErrorBudgetBurn", "app": "shop", "severity": "critical", "window": "1h"}


def firing_names(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((a["labels"]["alertname"], a["labels"].get("severity", "")) for a in alerts
                  if a["status"]["state"] == "active")


@needs_alertmanager
@pytest.mark.slow
def test_alert_survives_a_restart_once_and_resolves(run_app: RunApp, tmp_path: Path) -> None:
    with sink() as hook, alertmanager(tmp_path, hook.url) as am, sample_app("--fail-rate", "0.5") as (_, app_port):
        dashboard = start_dashboard(run_app, "--alertmanager", am.url, data=str(tmp_path / "history.sqlite3"))
        sidecar = start_sidecar(run_app, app_port, dashboard.url, pod="shop-5-x2k9q")
        for _ in range(100):
            sidecar.get("/fail?p=0.5")
        # Evaluated every 5 s; a fresh dashboard's windows hold only the failing minute.
        eventually(lambda: ("MothershipErrorBudgetBurn", "critical") in firing_names(am.alerts()), 20,
                   "the burn alert in Alertmanager")
        (got,) = [a for a in am.alerts() if a["labels"].get("severity") == "critical"]
        assert got["labels"] == BURN
        assert "shop is failing" in got["annotations"]["summary"]
        eventually(lambda: any(n["labels"] == BURN for n in hook.notifications("firing")), 15,
                   "Alertmanager's firing notification")
        health = dashboard.json("/api/alerts")
        assert health["apps"]["shop"]["state"] == "critical"
        since = health["apps"]["shop"]["since"]

        sidecar.proc.stop()  # its last batch sent; nothing more comes from it
        dashboard.proc.stop()
        assert (tmp_path / "history.sqlite3.alerts.json").exists()
        dashboard = restart_dashboard(run_app, dashboard)
        health = dashboard.json("/api/alerts")
        assert health["apps"]["shop"] == {"state": "critical", "reason": got["annotations"]["summary"],
                                          "since": since}  # the same alert, from the same moment

        # Much good traffic, as a busy sidecar reports it: the 5-minute ratio drops under 14.4 x 0.1%.
        now = int(time.time())
        good = {"t": now, "route": "/", "method": "GET", "count": 200_000, "status": {"2xx": 200_000},
                "failures": 0, "hist": [[20, 200_000]], "sum": 1.0, "min": 0.1, "max": 0.1, "bytes_in": 0,
                "bytes_out": 0}
        headers = {"Content-Type": "application/json"}
        body = json.dumps({"pod": "shop-5-x2k9q", "stats": [], "summary": [good]}).encode()
        assert fetch(dashboard.port, "/stats", "POST", body, headers).status == 200

        def keep_alive() -> bool:  # a resource report now and then: the pod is not silent
            fetch(dashboard.port, "/resources", "POST", json.dumps(resource_body("shop-5-x2k9q",
                  at=time.time())).encode(), headers)
            return any(n["labels"] == BURN for n in hook.notifications("resolved"))

        # The restored alert is held for the warm-up (30 s), then resolved and sent as such.
        eventually(keep_alive, 60, "Alertmanager's resolved notification", every=1.0)
        assert firing_names(am.alerts()) == []
        assert [n["labels"] for n in hook.notifications("firing")].count(BURN) == 1  # never sent as new
        assert dashboard.json("/api/alerts") == {"firing": [], "apps": {}, "pods": {}}
        assert dashboard.metric("mothership_alert_notifications_total", receiver="alertmanager",
                                outcome="delivered") >= 1
        assert dashboard.metric("mothership_alert_notifications_total", receiver="alertmanager",
                                outcome="failed") == 0


@pytest.mark.gen_test(timeout=30)
async def test_state_and_windows_are_written_apart_and_read_back(io_loop: Any, tmp_path: Path) -> None:
    from app.core.wire import StatsBatch
    from app.dashboard.alerts.service import AlertService
    from app.options import DashboardConfig
    from tests.dashboard_support import FakeClock

    clock = FakeClock(1_700_000_000.0)
    config = DashboardConfig(data=str(tmp_path / "h.sqlite3"))
    service = AlertService(config, clock)
    cell = {"t": int(clock()), "route": "/", "method": "GET", "count": 100, "status": {"2xx": 50, "5xx": 50},
            "failures": 50, "hist": [[30, 100]], "sum": 1.0, "min": 1.0, "max": 1.0, "bytes_in": 0, "bytes_out": 0}
    service.observe_stats(StatsBatch(pod="shop-1-a", app="shop", batch=None, dropped=0, samples=[], summary=[cell]))
    await service.cycle()
    assert len(service.evaluator.firing) == 2
    small = tmp_path / "h.sqlite3.alerts.json"
    windows = tmp_path / "h.sqlite3.alerts-windows.json"
    assert small.exists() and not windows.exists()  # the windows wait for their five minutes, or the stop
    assert "apps" not in json.loads(small.read_text())["evaluator"]
    clock.advance(301)
    await service.cycle()  # written in a worker thread
    assert json.loads(windows.read_text())["apps"]["shop"] == [[cell["t"] // 60, 100, 50, 0]]
    await service.stop()
    again = AlertService(config, clock)
    assert again.evaluator.firing.keys() == service.evaluator.firing.keys()
    assert again.evaluator.apps["shop"].window(60) == [100, 50, 0]
    assert list(again.evaluator.pods) == ["shop-1-a"]
    windows.write_text("{not json")  # damaged: skipped with a log line, the rest still read
    third = AlertService(config, clock)
    assert third.evaluator.firing.keys() == service.evaluator.firing.keys() and third.evaluator.apps == {}
