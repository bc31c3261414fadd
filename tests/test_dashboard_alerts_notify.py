"""The notifier against a real Alertmanager (and a webhook): the documented labels, resolution, re-sends, backoff."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from app.dashboard.alerts.evaluator import Alert
from app.dashboard.alerts.notify import Notifier, Receiver, rfc3339
from tests.alertmanager_support import alertmanager, needs_alertmanager, sink, until
from tests.conftest import free_port
from tests.dashboard_support import FakeClock


def burn(now: float, app: str = "shop") -> Alert:
    return Alert({"alertname": "MothershipErrorBudgetBurn", "app": app, "severity": "critical", "window": "1h"},
                 {"summary": f"{app} is failing fast enough to spend 2% of its error budget in an hour",
                  "description": f"{app}: 50% of exchanges failed over the last hour"}, now)


@needs_alertmanager
@pytest.mark.gen_test(timeout=60)
async def test_an_alert_reaches_alertmanager_with_its_labels_then_resolves(io_loop: Any, tmp_path: Path) -> None:
    with sink() as hook, alertmanager(tmp_path, hook.url) as am:
        notifier = Notifier([Receiver("alertmanager", am.url, "")])
        alert = burn(time.time())
        firing = {alert.key: alert}
        assert await notifier.send(firing)
        (got,) = am.alerts()
        assert got["labels"] == alert.labels
        assert got["annotations"] == alert.annotations
        assert got["status"]["state"] == "active"
        assert got["startsAt"].startswith(rfc3339(alert.starts_at)[:19])
        # Alertmanager routes it on: the webhook it calls gets it firing, with our labels.
        (notice,) = await until(lambda: hook.notifications("firing"), what="the firing notification")
        assert notice["labels"] == alert.labels
        # Resolved: sent once, with its end; Alertmanager tells the webhook.
        del firing[alert.key]
        alert.ends_at = time.time()
        notifier.resolved([alert])
        assert await notifier.send(firing)
        (resolved,) = await until(lambda: hook.notifications("resolved"), what="the resolved notification")
        assert resolved["labels"] == alert.labels
        assert not await notifier.send(firing)  # nothing left to say
        assert [a for a in am.alerts() if a["status"]["state"] == "active"] == []
        notifier.close()


@pytest.mark.gen_test(timeout=30)
async def test_re_sent_while_firing_never_a_storm(io_loop: Any) -> None:
    clock = FakeClock(time.time())
    with sink() as hook:
        notifier = Notifier([Receiver("webhook", hook.url, "http://dash.example/")], clock=clock, resend=60.0)
        alerts = {a.key: a for a in (burn(clock(), "shop"), burn(clock(), "cart"))}
        for _ in range(20):  # evaluated every few seconds: one request, both alerts in it
            await notifier.send(alerts)
            clock.advance(2)
        assert len(hook.bodies) == 1
        message = hook.bodies[0]
        assert message["version"] == "4" and message["status"] == "firing"
        assert sorted(a["labels"]["app"] for a in message["alerts"]) == ["cart", "shop"]
        assert all(a["generatorURL"] == "http://dash.example/" and len(a["fingerprint"]) == 16
                   for a in message["alerts"])
        assert message["commonLabels"] == {"alertname": "MothershipErrorBudgetBurn", "severity": "critical",
                                           "window": "1h"}
        clock.advance(30)  # a minute after the first send: re-sent, once
        await notifier.send(alerts)
        await notifier.send(alerts)
        assert len(hook.bodies) == 2
        notifier.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_receiver_that_is_down_is_retried_with_growing_waits(io_loop: Any) -> None:
    clock = FakeClock(time.time())
    port = free_port()  # nothing listens there
    results: list[bool] = []
    receiver = Receiver("webhook", f"http://127.0.0.1:{port}/hook", "")
    notifier = Notifier([receiver], clock=clock, on_result=lambda name, ok: results.append(ok))
    alert = burn(clock())
    firing = {alert.key: alert}
    for _ in range(10):
        await notifier.send(firing)
    assert results == [False] and receiver.next_try == pytest.approx(clock() + 5)
    clock.advance(5)
    await notifier.send(firing)
    assert results == [False, False] and receiver.next_try == pytest.approx(clock() + 10)
    with sink() as hook:  # the receiver comes back where it was
        receiver.endpoint = hook.url
        clock.advance(10)
        assert await notifier.send(firing)
        assert results[-1] is True and receiver.failures == 0
        assert len(hook.bodies) == 1
    notifier.close()


def test_what_each_receiver_was_told_survives_a_restart() -> None:
    receiver = Receiver("alertmanager", "http://am:9093", "")
    alert = burn(1000.0)
    receiver.delivered([alert], 1010.0)
    gone = burn(900.0, "cart")
    gone.ends_at = 1005.0
    receiver.resolved[gone.key] = gone
    again = Receiver("alertmanager", "http://am:9093", "")
    again.load(receiver.dump())
    assert again.sent == {alert.key: 1010.0}
    assert list(again.resolved) == [gone.key] and again.resolved[gone.key].ends_at == 1005.0
    elsewhere = Receiver("alertmanager", "http://other:9093", "")
    elsewhere.load(receiver.dump())  # another Alertmanager was told nothing
    assert elsewhere.sent == {} and elsewhere.resolved == {}
