"""What the API and the live page read from the store: the overview, series, the pod lists, recent and slowest.

`StoreViews` is `PodStore`'s reading half (`app.dashboard.aggregate` holds the
writing one): read models built from the pods, apps and scopes the store keeps.
Pure code; the clock is the store's.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import ujson

from app.core.wire import Sample
from app.dashboard.jsontext import dumps
from app.dashboard.pods import AppGroup, Pod, ResourceTotals
from app.dashboard.scope import Scope
from app.dashboard.tiers import LIVE_STEPS

RECENT = 100  # newest exchanges over all pods, in the overview
SLOWEST = 20
# Busiest routes per pod in the overview (a card shows 8); without the cap 100 pods with 500 routes each made
# every live update about 3 MiB. The app-wide `routes` list stays whole for the routes table.
POD_ROUTES = 10
OVERVIEW_STEP = 0.005  # seconds of overview building between two chances for other work to run
SLOWEST_SPAN = 300  # seconds the slowest list looks back
SERIES_STEPS = LIVE_STEPS  # window -> step of the live windows (docs/live-protocol.md)

T = TypeVar("T")


def run_steps(steps: Generator[None, None, T]) -> T:
    """What a stepped generator (one that yields to let other work run) returns, run to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _namespace(pod: Pod) -> dict[str, str]:
    """`{"namespace": ...}` for a pod whose sidecar said it, else nothing (GET /stats, /resources)."""
    return {"namespace": pod.namespace} if pod.namespace else {}


def tagged(sample: Sample, pod: str, app: str) -> dict[str, Any]:
    """A sample as the lists of all pods show it: with its pod and app."""
    out: dict[str, Any] = dict(sample)
    out["pod"] = pod
    out["app"] = app
    return out


class StoreViews:
    """The read models of `PodStore`, over the state it keeps (declared here for the type checker)."""

    clock: Callable[[], float]
    all: Scope
    totals: ResourceTotals
    apps: dict[str, AppGroup]
    pods: dict[str, Pod]
    recent: deque[tuple[str, str, Sample]]
    _slow: dict[int, list[tuple[float, int, dict[str, Any]]]]
    overview_pods: int

    def overview(self) -> dict[str, Any]:
        """The page's Overview (docs/live-protocol.md) as data."""
        return ujson.loads(self.overview_json())  # type: ignore[no-any-return]

    def overview_json(self) -> str:
        """The Overview as JSON text, built at once (see `overview_steps`)."""
        return run_steps(self.overview_steps(math.inf))

    def overview_steps(self, budget: float = OVERVIEW_STEP) -> Generator[None, None, str]:
        """The Overview as JSON text, assembled from pieces each scope keeps encoded until it changes.

        At thousands of pods the overview is megabytes: building and encoding it
        whole every second would cost more than the ingest it reports on. Even so,
        at 2000 pods it takes tens of milliseconds, so it is built a few pods at a
        time: this generator yields whenever `budget` seconds of work are done (its
        caller lets other work run in between) and returns the text. All its parts
        are taken at one `now`; a report that lands in between shows in the pods
        built after it, or in the next overview.
        """
        now = self.clock()
        pods = self._sorted_pods()
        dropped = sum(pod.dropped for pod in pods)
        omitted = max(0, len(pods) - self.overview_pods)
        if omitted:  # past the bound, the busiest live pods only (the totals and apps still count them all)
            pods = sorted(heapq.nsmallest(self.overview_pods, pods, key=lambda p: (p.stale, -p.total)),
                          key=lambda p: p.name)
        pods_out = []
        started = time.perf_counter()
        for pod in pods:
            pods_out.append(pod.overview_text(now, POD_ROUTES))
            if time.perf_counter() - started > budget:
                yield
                started = time.perf_counter()
        apps_out = []
        routes_out = []
        for _, app in sorted(self.apps.items()):
            if not app.pods:
                continue
            scope = app.scope
            head = {"app": app.name, "pods": sorted(app.pods)[:self.overview_pods], "pod_count": len(app.pods),
                    "stale": all(self.pods[p].stale for p in app.pods)}
            tail = {"cpu": app.totals.cpu, "memory": app.totals.memory, "memory_limit": app.totals.memory_limit}
            apps_out.append(f'{dumps(head)[:-1]},{scope.window(now).headline_text()},{dumps(tail)[1:-1]},'
                            f'"trend":{scope.trend_json(now)}}}')
            routes = scope.routes_json(now, app.name)
            if routes != "[]":
                routes_out.append(routes[1:-1])
        totals = {**self.all.window(now).headline(), "pods": len(self.pods), "apps": len(apps_out),
                  "dropped": dropped}
        return (f'{{"now":{round(now * 1000)},"totals":{dumps(totals)},"apps":[{",".join(apps_out)}],'
                f'"pods":[{",".join(pods_out)}],"omitted_pods":{omitted},"routes":[{",".join(routes_out)}],'
                f'"recent":{dumps(self.recent_samples())},"slowest":{dumps(self.slowest(now))}}}')

    def recent_samples(self) -> list[dict[str, Any]]:
        out = [tagged(sample, pod, app) for pod, app, sample in self.recent]
        out.sort(key=lambda s: s["started"])
        return out

    def slowest(self, now: float) -> list[dict[str, Any]]:
        oldest = int(now) // 60 - SLOWEST_SPAN // 60
        candidates = [item for minute, heap in self._slow.items() if minute >= oldest for item in heap]
        return [sample for _, _, sample in heapq.nlargest(SLOWEST, candidates)]

    def scope(self, name: str) -> Scope | None:
        if name == "all":
            return self.all
        kind, _, rest = name.partition(":")
        if kind == "app":
            app = self.apps.get(rest)
            return app.scope if app else None
        if kind == "pod":
            pod = self.pods.get(rest)
            return pod.scope if pod else None
        return None

    def series(self, name: str, window: int, tail: int | None = None) -> dict[str, Any] | None:
        """A Series for `all`, `app:NAME` or `pod:NAME`; None if unknown. `tail` limits to the last seconds."""
        scope = self.scope(name)
        step = SERIES_STEPS.get(window)
        if scope is None or step is None:
            return None
        span = window if tail is None else min(window, max(step, tail - tail % step))
        data = scope.series(self.clock(), span, step)
        return {"scope": name, "window": window, "step": step, **data}

    def stats_list(self) -> list[dict[str, Any]]:
        """GET /stats: one object per pod, recent samples oldest first, plus the window's numbers."""
        now = self.clock()
        out = []
        for pod in self._sorted_pods():
            entry: dict[str, Any] = {"pod": pod.name, "app": pod.app, **_namespace(pod), "stats": list(pod.recent),
                                     "stale": pod.stale, "seen": round(pod.seen * 1000),
                                     "dropped": pod.dropped, "total": pod.total}
            entry.update(pod.scope.window(now).numbers())
            out.append(entry)
        return out

    def resources_list(self) -> list[dict[str, Any]]:
        return [{"pod": pod.name, "app": pod.app, **_namespace(pod), "resource": pod.resource,
                 "seen": round((pod.resource_seen or pod.seen) * 1000), "stale": pod.stale}
                for pod in self._sorted_pods()]

    def _sorted_pods(self) -> list[Pod]:
        return [self.pods[name] for name in sorted(self.pods)]

    def counts(self) -> tuple[int, int]:
        """(live pods, stale pods)."""
        stale = sum(1 for pod in self.pods.values() if pod.stale)
        return len(self.pods) - stale, stale
