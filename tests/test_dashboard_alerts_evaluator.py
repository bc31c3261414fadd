"""The embedded alerts' evaluator, on a fake clock: when each alert fires and when it resolves."""

from __future__ import annotations

from typing import Any

from app.core.histogram import bucket_of
from app.core.wire import StatsBatch
from app.dashboard.alerts.evaluator import AlertEvaluator, Changes
from app.dashboard.alerts.objectives import Objective, Objectives
from tests.dashboard_support import T0, FakeClock

RATE = 10  # exchanges a second


def cell(t: int, count: int, failures: int = 0, ms: float = 20.0, slow: int = 0,
         slow_ms: float = 3000.0) -> dict[str, Any]:
    hist = [[bucket_of(ms), count - slow]] + ([[bucket_of(slow_ms), slow]] if slow else [])
    return {"t": t, "route": "/", "method": "GET", "count": count, "status": {"2xx": count - failures,
            "5xx": failures}, "failures": failures, "hist": hist, "sum": 0.0, "min": 0.0, "max": 0.0,
            "bytes_in": 0, "bytes_out": 0}


def batch(pod: str, cells: list[dict[str, Any]], app: str = "shop", dropped: int = 0) -> StatsBatch:
    return StatsBatch(pod=pod, app=app, batch=None, dropped=dropped, samples=[], summary=cells, summarised=True)


class Fleet:
    """Pods of one app posting a batch every 5 s, as sidecars do; the evaluator checked every 5 s."""

    def __init__(self, evaluator: AlertEvaluator, clock: FakeClock, pods: tuple[str, ...] = ("shop-1-a",),
                 rate: int = RATE) -> None:
        self.evaluator, self.clock, self.pods, self.rate = evaluator, clock, pods, rate
        self.log: list[tuple[float, Changes]] = []

    def run(self, seconds: int, failing: float = 0.0, slow: float = 0.0) -> None:
        for _ in range(seconds // 5):
            start = int(self.clock())
            self.clock.advance(5)
            for pod in self.pods:
                n = self.rate
                cells = [cell(t, n, round(n * failing), slow=round(n * slow)) for t in range(start, start + 5)]
                self.evaluator.observe_stats(batch(pod, cells))
            changes = self.evaluator.evaluate()
            if changes:
                self.log.append((self.clock(), changes))

    def fired(self, name: str, severity: str | None = None) -> list[float]:
        return [at for at, ch in self.log for a in ch.fired if a.labels["alertname"] == name
                and (severity is None or a.labels["severity"] == severity)]

    def resolved(self, name: str, severity: str | None = None) -> list[float]:
        return [at for at, ch in self.log for a in ch.resolved if a.labels["alertname"] == name
                and (severity is None or a.labels["severity"] == severity)]


def evaluator(clock: FakeClock, objectives: Objectives | None = None, **kwargs: Any) -> AlertEvaluator:
    return AlertEvaluator(objectives or Objectives(), clock=clock, **kwargs)


def test_half_failing_is_alerted_within_two_minutes_and_resolved_within_a_few() -> None:
    clock = FakeClock(T0)
    fleet = Fleet(evaluator(clock), clock)
    fleet.run(6 * 3600)  # six good hours: every window full, the slowest case for the 1 h window
    assert fleet.log == []
    began = clock()
    fleet.run(180, failing=0.5)
    (fired,) = fleet.fired("MothershipErrorBudgetBurn", "critical")
    assert fired - began <= 120, fired - began
    recovered = clock()
    fleet.run(20 * 60)
    (resolved,) = fleet.resolved("MothershipErrorBudgetBurn", "critical")
    assert resolved - recovered <= 5 * 60 + 5, resolved - recovered
    alert = next(a for _, ch in fleet.log for a in ch.fired if a.labels["severity"] == "critical")
    assert alert.labels == {"alertname": "MothershipErrorBudgetBurn", "app": "shop", "severity": "critical",
                            "window": "1h"}
    assert "failed" in alert.annotations["description"] and "shop" in alert.annotations["summary"]
    assert alert.starts_at == fired and alert.ends_at == resolved


def test_a_slow_burn_warns_without_paging() -> None:
    clock = FakeClock(T0)
    fleet = Fleet(evaluator(clock), clock, rate=100)
    fleet.run(1800)
    fleet.run(3600, failing=0.01)  # 10x the budget: under the critical 14.4x, over the warning 6x
    assert fleet.fired("MothershipErrorBudgetBurn", "critical") == []
    assert len(fleet.fired("MothershipErrorBudgetBurn", "warning")) == 1


def test_a_healthy_app_at_the_objective_is_quiet() -> None:
    clock = FakeClock(T0)
    fleet = Fleet(evaluator(clock), clock, rate=1000)
    fleet.run(2 * 3600, failing=0.001, slow=0.01)  # exactly at both objectives
    assert fleet.log == []


def test_latency_burn_uses_the_apps_own_bound() -> None:
    clock = FakeClock(T0)
    strict = Objectives(Objective(), (("shop", Objective(p99_ms=500.0)),))
    fleet = Fleet(evaluator(clock, strict), clock)
    fleet.run(300)
    fleet.run(120, slow=0.9)  # nine in ten take 3 s
    (alert,) = [a for _, ch in fleet.log for a in ch.fired if a.labels["severity"] == "critical"]
    assert alert.labels["alertname"] == "MothershipLatencyBudgetBurn"
    assert "500 ms" in alert.annotations["summary"]
    other = Fleet(evaluator(clock, Objectives(Objective(p99_ms=5000.0))), clock)
    other.run(600, slow=0.9)  # 3 s is within a 5 s bound
    assert other.log == []


def test_a_silent_pod_alerts_after_silent_after_and_resolves_when_heard() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock, silent_after=60.0, drop_after=600.0, warmup=0.0)
    fleet = Fleet(ev, clock, pods=("shop-1-a", "shop-1-b"))
    fleet.run(60)
    quiet = Fleet(ev, clock, pods=("shop-1-a",))
    quiet.run(55)
    assert quiet.log == []
    quiet.run(10)
    (alert,) = [a for _, ch in quiet.log for a in ch.fired]
    assert alert.labels == {"alertname": "MothershipPodSilent", "app": "shop", "pod": "shop-1-b", "severity": "warning"}
    ev.observe_seen("shop-1-b", "shop")  # a resource report is enough
    changes = ev.evaluate()
    assert [a.labels["pod"] for a in changes.resolved] == ["shop-1-b"]


def test_a_pod_dropped_by_the_dashboard_stops_being_alerted() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock, silent_after=60.0, drop_after=300.0, warmup=0.0)
    ev.observe_seen("shop-1-a", "shop")
    clock.advance(70)
    assert [a.labels["alertname"] for a in ev.evaluate().fired] == ["MothershipPodSilent"]
    clock.advance(240)
    assert [a.labels["alertname"] for a in ev.evaluate().resolved] == ["MothershipPodSilent"]
    assert ev.pods == {}


def test_silence_counts_from_the_dashboards_own_start() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock, warmup=0.0)
    ev.observe_seen("shop-1-a", "shop")
    state = ev.dump()
    clock.advance(300)  # the dashboard was down five minutes: nobody could report
    restarted = evaluator(clock, warmup=0.0)
    restarted.load(state)
    assert not restarted.evaluate()
    clock.advance(61)
    assert [a.labels["pod"] for a in restarted.evaluate().fired] == ["shop-1-a"]


def test_dropped_samples_alert_for_five_minutes() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock, warmup=0.0)
    ev.observe_stats(batch("shop-1-a", [cell(int(T0), 5)], dropped=120))
    (alert,) = ev.evaluate().fired
    assert alert.labels["alertname"] == "MothershipSidecarDroppingSamples"
    assert "120 exchanges" in alert.annotations["description"]
    clock.advance(200)
    ev.observe_seen("shop-1-a", "shop")
    assert not ev.evaluate()
    clock.advance(120)
    ev.observe_seen("shop-1-a", "shop")
    assert [a.key for a in ev.evaluate().resolved] == [alert.key]


def test_state_survives_a_restart_without_resolving_or_refiring() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock)
    fleet = Fleet(ev, clock)
    fleet.run(600)
    fleet.run(60, failing=0.5)
    (alert,) = [a for _, ch in fleet.log for a in ch.fired if a.labels["severity"] == "critical"]
    state = ev.dump()
    clock.advance(20)
    restarted = evaluator(clock)
    restarted.load(state)
    assert restarted.firing[alert.key].starts_at == alert.starts_at
    # Still failing after the restart: the same alert, neither resolved nor fired again.
    again = Fleet(restarted, clock)
    again.run(60, failing=0.5)
    assert again.fired("MothershipErrorBudgetBurn", "critical") == []
    assert again.resolved("MothershipErrorBudgetBurn", "critical") == []
    assert restarted.apps["shop"].window(60)[0] == (600 + 60 + 60) * RATE  # the windows came back too


def test_restored_alert_is_held_through_the_warmup() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock)
    Fleet(ev, clock).run(60, failing=0.5)
    state = ev.dump()
    state["apps"] = {}  # as if the windows had been lost (a SIGKILL between two saves)
    restarted = evaluator(clock, warmup=30.0)
    restarted.load(state)
    assert not restarted.evaluate()  # no data yet: the alert stands
    clock.advance(31)
    assert len(restarted.evaluate().resolved) == 2  # both tiers, once the warmup is over and still no data


def test_health_names_the_worst_state_per_app_and_pod() -> None:
    clock = FakeClock(T0)
    ev = evaluator(clock, warmup=0.0)
    ev.observe_stats(batch("shop-1-a", [cell(int(T0), 100, 60)], dropped=3))
    ev.evaluate()
    health = ev.health()
    assert [f["severity"] for f in health["firing"]] == ["critical", "warning", "warning"]
    assert health["apps"]["shop"]["state"] == "critical"
    assert health["apps"]["shop"]["since"] == T0 * 1000
    assert health["pods"]["shop-1-a"]["state"] == "warning"
    assert "dropping" in health["pods"]["shop-1-a"]["reason"]


def test_damaged_state_is_skipped() -> None:
    ev = evaluator(FakeClock(T0))
    ev.load({"firing": [{"labels": {"app": "x"}}, "junk"], "apps": {"a": [[1, 2]], "b": "x"},
             "pods": {"p": {"app": 3}}})
    ev.load("not a dict")
    assert ev.firing == {} and ev.pods == {} and ev.apps["a"].minutes == {}


def test_apps_and_pods_watched_are_bounded(monkeypatch: Any) -> None:
    from app.dashboard.alerts import evaluator as module

    monkeypatch.setattr(module, "MAX_APPS", 3)
    monkeypatch.setattr(module, "MAX_PODS", 4)
    clock = FakeClock(T0)
    ev = evaluator(clock)
    for i in range(6):
        clock.advance(60)
        ev.observe_stats(batch(f"p{i}-1-a", [cell(int(clock()), 5)], app=f"app{i}"))
    assert sorted(ev.apps) == ["app3", "app4", "app5"]  # the least recently heard went first
    assert sorted(ev.pods) == ["p2-1-a", "p3-1-a", "p4-1-a", "p5-1-a"]
