"""Deltas, tiers, windows, trends, routes and series of `app.dashboard.scope` (pure code)."""

from __future__ import annotations

import random

import pytest
import ujson

from app.core.routes import OVERFLOW_ROUTE
from app.dashboard.delta import COARSE, TrafficDelta
from app.dashboard.scope import FINE_SPAN, ROUTE_LIMIT, Scope, window_start
from tests.dashboard_support import T0, cells_for, sample


def test_scope_window_trend_and_series() -> None:
    scope = Scope("pod:p")
    now = T0 + 120
    samples = [sample(started=T0 + 100 + i % 10, ms=5.0, status=200 if i % 4 else 503) for i in range(100)]
    scope.add_traffic(TrafficDelta(cells_for(samples), now, 3600), now)
    scope.add_resource(int(now), 40.0, 1e6, 2e6)
    window = scope.window(now)
    assert window.count == 100 and window.failures == 25
    assert window_start(now) == (T0 + 60, T0 + 120)
    start, end = scope.view(now)  # a scope's window may lag by one slot (its phase), never more
    assert (start, end) in ((T0 + 60, T0 + 120), (T0 + 55, T0 + 115))
    headline = window.headline()
    assert headline["rps"] == round(100 / 60, 3) and headline["success"] == 0.75
    trend = ujson.loads(scope.trend_json(now))
    slots = list(range(end - 300, end, COARSE))
    assert len(trend["rps"]) == 60 and trend["rps"][slots.index(T0 + 100)] == 10.0
    assert trend["rps"][slots.index(T0 + 105)] == 10.0 and trend["rps"][slots.index(T0 + 95)] is None
    assert trend["cpu"][-1] is None  # the current slot is not complete yet

    series = scope.series(now, 300, 1)
    assert len(series["t"]) == 300 and series["t"][-1] == int(now)
    at = series["t"].index(int(T0) + 100)
    in_second = [s for s in samples if s["started"] == (T0 + 100) * 1000]
    failed = sum(1 for s in in_second if s["response"]["status"] == 503)
    assert series["rps"]["2xx"][at] == len(in_second) - failed and series["rps"]["5xx"][at] == failed > 0
    assert series["p50"][at] is not None and series["p50"][at - 1] is None
    assert series["cpu"][-1] == 40.0 and series["memory"][-1] == 1e6 and series["memory_limit"] == 2e6

    def failures(lo: float, hi: float) -> int:
        return sum(1 for s in samples if lo * 1000 <= s["started"] < hi * 1000 and s["response"]["status"] == 503)

    coarse = scope.series(now, 900, 5)
    at = coarse["t"].index(int(T0) + 100)
    assert coarse["rps"]["5xx"][at] == failures(T0 + 100, T0 + 105) / 5
    assert coarse["rps"]["5xx"][at + 1] == failures(T0 + 105, T0 + 110) / 5
    hour = scope.series(now, 3600, 10)
    at = hour["t"].index(int(T0) + 100)
    assert hour["rps"]["5xx"][at] == 2.5 and len(hour["t"]) == 360 and hour["rps"]["2xx"][at] == 7.5


def test_step_one_series_reads_fine_buckets_only() -> None:
    scope = Scope("all")
    samples = [sample(started=T0 + 1) for _ in range(10)]
    delta = TrafficDelta(cells_for(samples), T0 + 2, 3600)
    for t5, b in delta.coarse.items():
        scope.load_bucket(COARSE, t5, b)
    scope.add_resource(int(T0) + 2, 1.0, 1.0, None)  # a fine bucket with no traffic
    series = scope.series(T0 + 2, 300, 1)
    assert series["rps"]["2xx"][-3:] == [None, None, 0.0]  # not the coarse slot spread over its seconds
    assert scope.series(T0 + 2, 900, 5)["rps"]["2xx"][-1] == 2.0


def test_eviction_bounds_every_tier() -> None:
    scope = Scope("pod:p")
    retention = 600
    for second in range(0, 2000):
        now = T0 + second
        scope.add_traffic(TrafficDelta(cells_for([sample(started=now)]), now, retention), now)
        scope.add_resource(int(now), 1.0, 1.0, None)
        scope.evict(now, retention)
    assert len(scope.fine) <= FINE_SPAN + 1
    assert len(scope.coarse) <= retention // COARSE + 1
    assert all(len(stat.cells) <= 12 for stat in scope.routes.values())
    scope.evict(T0 + 10_000, retention)  # a long silence: everything goes
    assert not scope.fine and not scope.coarse and not scope.routes


def test_route_table_is_capped() -> None:
    scope = Scope("pod:p")
    samples = [sample(f"/r{i}x") for i in range(ROUTE_LIMIT + 50)]
    delta = TrafficDelta(cells_for(samples), T0 + 1, 3600)
    scope.add_routes(delta)
    assert len(scope.routes) == ROUTE_LIMIT + 1
    rows = scope.route_rows(T0 + 10)
    other = next(r for r in rows if r["route"] == OVERFLOW_ROUTE)
    assert other["count"] == 50 and rows[0]["count"] == 50


def test_route_rows_numbers() -> None:
    scope = Scope("app:shop")
    samples = [sample("/a", ms=float(ms), started=T0 + 30, status=500 if ms == 100 else 200)
               for ms in range(1, 101)]
    scope.add_routes(TrafficDelta(cells_for(samples), T0 + 31, 3600))
    (row,) = scope.route_rows(T0 + 40)
    assert row["route"] == "/a" and row["method"] == "GET" and row["count"] == 100 and row["total"] == 100
    assert row["errors"] == 1 and row["error_rate"] == 0.01
    assert row["avg"] == 50.5 and row["min"] == 1.0 and row["max"] == 100.0
    assert row["last_seen"] == (T0 + 30) * 1000
    assert 40 < row["p50"] < 60 and 90 < row["p99"] <= 100


@pytest.mark.parametrize("persist_fine", [True, False])  # a pod's one-second slots are frozen as series points
def test_old_buckets_are_frozen_and_read_the_same(persist_fine: bool) -> None:
    hot, cold = Scope("pod:hot", persist_fine=persist_fine), Scope("pod:cold", persist_fine=persist_fine)
    for second in range(0, 1200):
        now = T0 + second
        cells = cells_for([sample(started=now - 2, ms=float(1 + second % 97), status=200 + 300 * (second % 7 == 0))])
        for scope in (hot, cold):
            scope.add_traffic(TrafficDelta(cells, now, 3600), now)
            scope.add_resource(int(now), float(second % 50), 1e6 + second, 2e6)
        cold.evict(now, 3600)
    frozen = sum(type(v) is bytes for v in (*cold.fine.values(), *cold.coarse.values()))
    assert frozen > 400 and all(type(v) is not bytes for v in hot.fine.values())
    now = T0 + 1200
    hot.evict(now, 3600)  # the same eviction of old slots, and the same freezing
    for window, step in ((300, 1), (900, 5), (3600, 10)):
        assert cold.series(now, window, step) == hot.series(now, window, step)
    assert cold.trend_json(now) == hot.trend_json(now)
    assert cold.window(now).headline() == hot.window(now).headline()
    # Late data for a frozen slot thaws it and counts.
    late = cells_for([sample(started=T0 + 100)])
    cold.add_traffic(TrafficDelta(late, now, 3600), now)
    bucket = cold.bucket(COARSE, int(T0) + 100)
    assert bucket is not None and bucket.count == 6


def test_the_trend_kept_up_to_date_equals_one_built_afresh() -> None:
    rng = random.Random(3)
    kept, fresh = Scope("pod:trend"), Scope("pod:trend")  # same name, same phase
    for second in range(0, 900, 3):
        now = T0 + second
        late = rng.choice([1, 2, 30, 200])  # mostly recent data, some late
        cells = cells_for([sample(started=now - late, ms=rng.uniform(1, 50))])
        cpu, memory = rng.uniform(0, 100), rng.uniform(1e6, 2e6)
        for scope in (kept, fresh):
            scope.add_traffic(TrafficDelta(cells, now, 3600), now)
            scope.add_resource(int(now), cpu, memory, None)
            scope.evict(now, 3600)
        fresh._trend = None
        assert kept.trend_json(now) == fresh.trend_json(now), second


def test_an_app_scope_settles_for_a_few_seconds_a_pod_scope_does_not() -> None:
    now = T0 + 200
    first, more = cells_for([sample(started=T0 + 150)]), cells_for([sample(started=T0 + 151)] * 4)
    for settle, expected_soon in ((5.0, 1), (0.0, 5)):
        scope = Scope("app:shop", settle=settle)
        scope.add_traffic(TrafficDelta(first, now, 3600), now)
        assert scope.window(now).count == 1
        scope.add_traffic(TrafficDelta(more, now, 3600), now)
        assert scope.window(now + 4).count == expected_soon
        assert scope.window(now + 5.5).count == 5


def test_traffic_goes_to_history_at_once_resource_readings_once_their_bucket_has_settled() -> None:
    scope = Scope("app:a")
    t = int(T0) - int(T0) % COARSE
    scope.add_resource(t, 10.0, 1.0, None)
    assert scope.drain_buckets(settled=t) == []  # its second and its slot have not ended yet
    scope.add_traffic(TrafficDelta(cells_for([sample(started=t + 0.5)]), t + 1, 3600), t + 1)
    written = {(step, at): row for step, at, row in scope.drain_buckets(settled=t)}
    assert set(written) == {(1, t), (COARSE, t)} and written[1, t][0] == 1 and written[1, t][10] == 1  # count, cpu_n
    assert scope.drain_buckets(settled=t + COARSE) == []  # the readings went with the traffic
    for second in range(t + 1, t + COARSE):
        scope.add_resource(second, 20.0, 1.0, None)
    assert [(step, at) for step, at, _ in scope.drain_buckets(settled=t + 2)] == [(1, t + 1)]
    assert sorted((step, at) for step, at, _ in scope.drain_buckets(settled=t + COARSE)) == [
        (1, t + 2), (1, t + 3), (1, t + 4), (COARSE, t)]
    scope.add_resource(t + COARSE, 30.0, 1.0, None)
    assert len(scope.drain_buckets()) == 2  # without `settled` (the last write), every change goes
    assert scope.drain_buckets() == []
