"""`app.dashboard.delta`: a batch's cells summed per second, per coarse slot and per route slot (pure code)."""

from __future__ import annotations

import random

from app.core.histogram import Histogram
from app.dashboard.buckets import Window
from app.dashboard.delta import MAX_SKEW, TrafficDelta
from tests.dashboard_support import T0, cells_for, sample


def test_percentiles_match_the_shared_histogram() -> None:
    rng = random.Random(7)
    times = [rng.lognormvariate(2, 1.5) for _ in range(2000)]
    samples = [sample(ms=ms, started=T0 + i % 10) for i, ms in enumerate(times)]
    expected = Histogram()
    for ms in times:
        expected.add(ms)
    window = Window(60)
    delta = TrafficDelta(cells_for(samples), T0 + 10, 3600)
    for bucket in delta.seconds.values():
        window.merge(bucket)
    assert window.count == 2000
    p50, p95, p99 = window.quantiles()
    assert p50 == round(expected.quantile(0.5), 3)  # type: ignore[arg-type]
    assert p95 == round(expected.quantile(0.95), 3)  # type: ignore[arg-type]
    assert p99 == round(expected.quantile(0.99), 3)  # type: ignore[arg-type]
    assert abs(window.low - min(times)) < 1e-3 and abs(window.high - max(times)) < 1e-3


def test_delta_sums_cells_per_second_per_slot_and_per_route() -> None:
    samples = [sample("/a", started=T0 + 1), sample("/a", started=T0 + 1, status=500),
               sample("/b/7", started=T0 + 2), sample("/a", started=T0 + 6)]
    delta = TrafficDelta(cells_for(samples), T0 + 10, 3600)
    assert {t: b.count for t, b in delta.seconds.items()} == {T0 + 1: 2, T0 + 2: 1, T0 + 6: 1}
    assert {t: b.count for t, b in delta.coarse.items()} == {T0: 3, T0 + 5: 1}
    assert {k: c.count for k, c in delta.routes.items()} == {
        ("/a", "GET", T0): 2, ("/b/{id}", "GET", T0): 1, ("/a", "GET", T0 + 5): 1}
    assert delta.count == 4 and delta.cells == 3  # the two /a exchanges of one second share a cell
    assert delta.seconds[int(T0) + 1].failures == 1


def test_delta_drops_cells_past_retention_and_pulls_future_ones_to_now() -> None:
    now = T0 + 100
    samples = [sample(started=now - 4000), sample(started=now + MAX_SKEW + 50), sample(started=now - 1)]
    delta = TrafficDelta(cells_for(samples), now, 3600)
    assert sorted(delta.seconds) == [int(now) - 1, int(now)]
    assert delta.count == 2
