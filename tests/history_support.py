"""A store fed by a few pods under a fake clock, writing history as the server does: for the archive's tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.core.wire import parse_resources, parse_stats
from app.dashboard.aggregate import PodStore
from app.dashboard.history import History, Prune
from app.dashboard.lookback import Lookback
from tests.dashboard_support import T0, FakeClock, resource_body, sample, stats_body

PODS = ("shop-0-x", "shop-1-x", "cart-0-x")


class Feed:
    """Pods reporting every 5 s (stats and resources) to a store; history written every 10 s, pruned each minute."""

    def __init__(self, path: Path | None, *, retention: float = 7 * 86400.0, start: float = T0,
                 pods: tuple[str, ...] = PODS) -> None:
        self.clock = FakeClock(start)
        self.path = path
        self.retention = retention
        self.pods = pods
        self.history = History(str(path)) if path is not None else None
        self.store = PodStore(retention=retention, clock=self.clock, archive=path is not None,
                              drop_after=retention)
        if self.history is not None:
            self.store.restore(self.history.load(self.clock(), retention, retention))
        self.lookback = Lookback(self.store, str(path) if path is not None else None)
        self.exchanges = 0

    def report(self, lag: float = 3.0) -> None:
        """Every pod's stats (four routes, one failing) and resources, the exchanges `lag` seconds old."""
        now = self.clock()
        second = int(now)
        for i, pod in enumerate(self.pods):
            samples = [sample(f"/r{k}/1", status=500 if k == 3 and second % 15 == 0 else 200,
                              ms=0.5 + (second * 7 + k * 131 + i * 17) % 1500 / 3.0, started=now - lag)
                       for k in range(4)]
            self.store.ingest_stats(parse_stats(stats_body(pod, samples, batch=f"{pod}-{now}-{lag}")))
            self.store.ingest_resources(parse_resources(resource_body(pod, cpu=float(second % 90),
                                                                      memory=1e8 + second % 1000)))
            self.exchanges += len(samples)

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.advance(1)
            if int(self.clock()) % 5 == 0:
                self.report()
            self.store.tick()
            if int(self.clock()) % 10 == 0:
                self.write(prune=int(self.clock()) % 60 == 0)

    def write(self, *, prune: bool = False, final: bool = False) -> None:
        if self.history is not None:
            self.history.write(self.store.drain(final), Prune(self.clock(), self.retention) if prune else None)

    def series(self, scope: str, window: int, end: int | None = None) -> dict[str, Any] | None:
        return asyncio.run(self.lookback.series(scope, window, end))

    def routes(self, start: int, end: int, app: str | None = None) -> dict[str, Any]:
        return asyncio.run(self.lookback.routes(start, end, app))

    def close(self) -> None:
        self.lookback.close()
        if self.history is not None:
            self.write(final=True)
            self.history.close()
