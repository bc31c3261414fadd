"""`AlertEvaluator`: the dashboard's own alerts, from what the sidecars report.

The same alerts as deploy/prometheus/rules.yaml, by the same names and labels:
error-budget and latency-budget burn per app (multi-window, multi-burn-rate, as in
Google's SRE workbook: critical when both the 1 h and 5 min windows burn 14.4x the
budget, warning when the 6 h and 30 min ones burn 6x), a pod silent, a sidecar dropping
samples. Fed at ingest, evaluated on a timer; pure logic with an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from app.core.wire import StatsBatch
from app.dashboard.alerts.objectives import Objective, Objectives
from app.dashboard.alerts.windows import AppWindows, cell_counts, slow_index

# (severity, window label, long span, short span, burn factor): the workbook's two page tiers.
TIERS: Final = (("critical", "1h", 60, 5, 14.4), ("warning", "6h", 360, 30, 6.0))
DROP_WINDOW = 300.0  # seconds: a sidecar that dropped samples this recently is alerted on
WARMUP = 30.0  # seconds after start in which a firing alert is not resolved: the windows refill first
# Apps and pods watched at most (the store's own caps are lower; these bound churn: an app is kept
# for the 6 h of its windows, a pod until --drop-after). Past them the least recently heard goes.
MAX_APPS = 5000
MAX_PODS = 20000

Key = tuple[tuple[str, str], ...]


@dataclass
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float  # epoch seconds
    ends_at: float | None = None  # set once resolved

    @property
    def key(self) -> Key:
        return tuple(sorted(self.labels.items()))

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "annotations": self.annotations, "starts_at": self.starts_at,
                "ends_at": self.ends_at}

    @classmethod
    def from_json(cls, data: Any) -> Alert | None:
        if not isinstance(data, dict):
            return None
        labels, annotations = data.get("labels"), data.get("annotations")
        starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
        if not (isinstance(labels, dict) and isinstance(annotations, dict) and _str_map(labels)
                and _str_map(annotations) and isinstance(starts_at, (int, float))
                and (ends_at is None or isinstance(ends_at, (int, float))) and "alertname" in labels):
            return None
        return cls(dict(labels), dict(annotations), float(starts_at), None if ends_at is None else float(ends_at))


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


@dataclass
class PodWatch:
    app: str
    seen: float
    drops: list[tuple[float, int]] = field(default_factory=list)  # (when, exchanges dropped), last DROP_WINDOW


@dataclass
class Changes:
    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fired or self.resolved)


def _percent(ratio: float) -> str:
    return f"{100 * ratio:.3g}%"


def _duration(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


class AlertEvaluator:
    """Per-app windows and per-pod watches in; the set of firing alerts out."""

    def __init__(self, objectives: Objectives, *, clock: Callable[[], float] = time.time, silent_after: float = 60.0,
                 drop_after: float = 600.0, warmup: float = WARMUP) -> None:
        self.objectives = objectives
        self.clock = clock
        self.silent_after = silent_after
        self.drop_after = drop_after
        self.warmup = warmup
        self.started = clock()
        self.apps: dict[str, AppWindows] = {}
        self.pods: dict[str, PodWatch] = {}
        self.firing: dict[Key, Alert] = {}
        self._slow_from: dict[str, int] = {}  # app -> first slow histogram bucket

    # --- ingest --------------------------------------------------------------------

    def observe_stats(self, batch: StatsBatch) -> None:
        now = self.clock()
        watch = self._seen(batch.pod, batch.app, now)
        if batch.dropped:
            watch.drops.append((now, batch.dropped))
        if not batch.summary:
            return
        windows = self.apps.get(batch.app)
        if windows is None:
            if len(self.apps) >= MAX_APPS:
                oldest = min(self.apps, key=lambda a: max(self.apps[a].minutes, default=0))
                del self.apps[oldest]
                self._slow_from.pop(oldest, None)
            windows = self.apps[batch.app] = AppWindows(int(now // 60))
        slow_from = self._slow_from.get(batch.app)
        if slow_from is None:
            slow_from = self._slow_from[batch.app] = slow_index(self.objectives.for_app(batch.app).p99_ms)
        # A batch spans a few seconds: add it to the windows once per minute, not once per cell.
        minutes: dict[int, list[int]] = {}
        for cell in batch.summary:
            minute, total, failed, slow = cell_counts(cell, slow_from)
            counts = minutes.get(minute)
            if counts is None:
                minutes[minute] = [total, failed, slow]
            else:
                counts[0] += total
                counts[1] += failed
                counts[2] += slow
        for minute, (total, failed, slow) in minutes.items():
            windows.add(minute, total, failed, slow)

    def observe_seen(self, pod: str, app: str) -> None:
        """A resource report: the pod is alive (even with no traffic)."""
        self._seen(pod, app, self.clock())

    def _seen(self, pod: str, app: str, now: float) -> PodWatch:
        watch = self.pods.get(pod)
        if watch is None:
            if len(self.pods) >= MAX_PODS:
                del self.pods[min(self.pods, key=lambda p: self.pods[p].seen)]
            watch = self.pods[pod] = PodWatch(app, now)
        else:
            watch.seen = now
            watch.app = app
        return watch

    # --- evaluation ----------------------------------------------------------------

    def evaluate(self) -> Changes:
        """Advance the windows to now; what fired and what resolved since the last call."""
        now = self.clock()
        active: dict[Key, Alert] = {}
        for app, windows in self.apps.items():
            windows.advance(int(now // 60))
            for alert in self._burns(app, windows, self.objectives.for_app(app), now):
                active[alert.key] = alert
        for pod, watch in list(self.pods.items()):
            for alert in self._pod_alerts(pod, watch, now):
                active[alert.key] = alert
        self._forget(now)
        changes = Changes()
        for key, alert in active.items():
            current = self.firing.get(key)
            if current is None:
                self.firing[key] = alert
                changes.fired.append(alert)
            else:
                current.annotations = alert.annotations  # the numbers move; the alert stays the same one
        if now - self.started >= self.warmup:
            for key in [k for k in self.firing if k not in active]:
                alert = self.firing.pop(key)
                alert.ends_at = now
                changes.resolved.append(alert)
        return changes

    def _burns(self, app: str, windows: AppWindows, objective: Objective, now: float) -> Iterable[Alert]:
        for severity, label, long_span, short_span, factor in TIERS:
            long, short = windows.window(long_span), windows.window(short_span)
            if not (long[0] and short[0]):
                continue
            threshold = factor * objective.error_budget
            failed_long, failed_short = long[1] / long[0], short[1] / short[0]
            if failed_long > threshold and failed_short > threshold:
                span = "hour" if long_span == 60 else "six hours"
                share = "2% of its error budget in an hour" if long_span == 60 else \
                    "5% of its error budget in six hours"
                yield Alert({"alertname": "MothershipErrorBudgetBurn", "app": app, "severity": severity,
                             "window": label},
                            {"summary": f"{app} is failing fast enough to spend {share}",
                             "description": f"{app}: {_percent(failed_long)} of exchanges failed over the last "
                                            f"{span} ({_percent(failed_short)} over the last {short_span} minutes; "
                                            f"objective {_percent(objective.success)} success)."}, now)
            threshold = factor * objective.latency_budget
            slow_long, slow_short = long[2] / long[0], short[2] / short[0]
            if slow_long > threshold and slow_short > threshold:
                bound = _duration(objective.p99_ms)
                yield Alert({"alertname": "MothershipLatencyBudgetBurn", "app": app, "severity": severity,
                             "window": label},
                            {"summary": f"{app} is slow: its p99 is well over {bound}",
                             "description": f"{app}: {_percent(slow_long)} of exchanges took over {bound} over the "
                                            f"last {'hour' if long_span == 60 else 'six hours'} "
                                            f"({_percent(slow_short)} over the last {short_span} minutes; "
                                            f"objective: 99% within {bound})."}, now)

    def _pod_alerts(self, pod: str, watch: PodWatch, now: float) -> Iterable[Alert]:
        if self.silent_after <= now - watch.seen < self.drop_after:
            labels = {"alertname": "MothershipPodSilent", "app": watch.app, "pod": pod, "severity": "warning"}
            # Silence counts from our own start too (while the dashboard was down nobody could report),
            # unless the pod was already alerted on before the restart.
            since = watch.seen if tuple(sorted(labels.items())) in self.firing else max(watch.seen, self.started)
            if now - since >= self.silent_after:
                yield Alert(labels,
                            {"summary": f"The sidecar of {pod} has stopped reporting",
                             "description": f"{pod} ({watch.app}): nothing heard from its sidecar for "
                                            f"{int(now - watch.seen)} s."}, now)
        if watch.drops:
            watch.drops = [(when, n) for when, n in watch.drops if now - when < DROP_WINDOW]
        if watch.drops:
            dropped = sum(n for _, n in watch.drops)
            yield Alert({"alertname": "MothershipSidecarDroppingSamples", "app": watch.app, "pod": pod,
                         "severity": "warning"},
                        {"summary": f"The sidecar of {pod} is dropping samples",
                         "description": f"{pod}: {dropped} exchanges in the last 5 minutes never reached the "
                                        "dashboard (its buffer filled while the dashboard was away)."}, now)

    def _forget(self, now: float) -> None:
        """Pods silent past --drop-after, and apps with nothing in their longest window."""
        for pod in [p for p, w in self.pods.items() if now - w.seen >= self.drop_after]:
            del self.pods[pod]
        for app in [a for a, w in self.apps.items() if not w.minutes]:
            del self.apps[app]
            self._slow_from.pop(app, None)

    # --- what the page shows -------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Firing alerts (worst first) and the state of each app and pod they touch."""
        order = {"critical": 0, "warning": 1}
        alerts = sorted(self.firing.values(), key=lambda a: (order.get(a.labels.get("severity", ""), 2),
                                                             a.starts_at, a.key))
        apps: dict[str, dict[str, Any]] = {}
        pods: dict[str, dict[str, Any]] = {}
        firing = []
        for alert in alerts:
            labels = alert.labels
            severity, reason, since = labels.get("severity", "warning"), alert.annotations.get("summary", ""), \
                round(alert.starts_at * 1000)
            app, pod = labels.get("app", ""), labels.get("pod")
            firing.append({"alertname": labels["alertname"], "severity": severity, "app": app, "pod": pod,
                           "window": labels.get("window"), "reason": reason, "since": since})
            target, name = (pods, pod) if pod else (apps, app)
            if name and name not in target:  # the worst (first) alert names the state
                target[name] = {"state": severity, "reason": reason, "since": since}
        return {"firing": firing, "apps": apps, "pods": pods}

    # --- persistence ---------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {**self.dump_state(), "apps": {app: w.dump() for app, w in self.apps.items()}}

    def dump_state(self) -> dict[str, Any]:
        """Firing alerts and pods: small, written on every change."""
        return {"firing": [a.to_json() for a in self.firing.values()],
                "pods": {pod: {"app": w.app, "seen": w.seen, "drops": w.drops} for pod, w in self.pods.items()}}

    def windows_snapshot(self) -> dict[str, list[tuple[int, list[int]]]]:
        """Each app's minutes as they are now, cheap to take: `windows_json` encodes them (in another thread)."""
        return {app: list(w.minutes.items()) for app, w in self.apps.items()}

    def load(self, data: Any) -> None:
        """State written by `dump` (unknown or damaged parts skipped)."""
        if not isinstance(data, dict):
            return
        now_minute = int(self.clock() // 60)
        for raw in data.get("firing") or []:
            alert = Alert.from_json(raw)
            if alert is not None and alert.ends_at is None:
                self.firing[alert.key] = alert
        apps = data.get("apps")
        if isinstance(apps, dict):
            for app, rows in apps.items():
                if isinstance(app, str) and isinstance(rows, list):
                    self.apps[app] = AppWindows.load(rows, now_minute)
        pods = data.get("pods")
        if isinstance(pods, dict):
            for pod, raw in pods.items():
                if isinstance(raw, dict) and isinstance(raw.get("app"), str) and \
                        isinstance(raw.get("seen"), (int, float)):
                    drops = [(float(d[0]), int(d[1])) for d in raw.get("drops") or []
                             if isinstance(d, list) and len(d) == 2 and all(isinstance(v, (int, float)) for v in d)]
                    self.pods[pod] = PodWatch(raw["app"], float(raw["seen"]), drops)


def windows_json(snapshot: dict[str, list[tuple[int, list[int]]]]) -> dict[str, Any]:
    """`windows_snapshot()` in the form `load` reads (`{"apps": {app: [[minute, total, failed, slow], ...]}}`)."""
    return {"apps": {app: [[minute, *slot] for minute, slot in sorted(rows)] for app, rows in snapshot.items()}}
