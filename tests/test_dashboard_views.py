"""The store's read models (`app.dashboard.views`): the overview's shape and bounds, series, the slowest list."""

from __future__ import annotations

from app.core.wire import parse_resources
from app.dashboard.views import POD_ROUTES, RECENT, SLOWEST
from tests.dashboard_support import T0, FakeClock, make_store, post, resource_body, sample, stats_body


def test_overview_has_the_protocol_shape() -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    post(store, stats_body("shop-1-a", [sample(started=T0 + 50 + i % 40, ms=float(i)) for i in range(300)],
                           raw=150))
    store.ingest_resources(parse_resources(resource_body("shop-1-a")))
    overview = store.overview()
    assert set(overview) == {"now", "totals", "apps", "pods", "omitted_pods", "routes", "recent", "slowest"}
    assert set(overview["totals"]) == {"rps", "success", "p50", "p95", "p99", "pods", "apps", "dropped"}
    assert overview["now"] == (T0 + 100) * 1000
    (app,) = overview["apps"]
    assert {"app", "pods", "stale", "rps", "success", "p50", "p95", "p99", "cpu", "memory", "memory_limit",
            "trend"} <= set(app)
    (pod,) = overview["pods"]
    assert {"pod", "app", "stale", "seen", "dropped", "rps", "success", "p50", "p95", "p99", "cpu", "cores",
            "memory", "memory_limit", "trend", "routes", "route_count"} <= set(pod)
    assert all(len(v) == 60 for v in pod["trend"].values()) and set(pod["trend"]) == {"rps", "p95", "cpu", "memory"}
    route = overview["routes"][0]
    assert {"app", "route", "method", "count", "rps", "avg", "p50", "p95", "p99", "errors", "error_rate",
            "last_seen"} <= set(route)
    assert len(overview["recent"]) == RECENT
    started = [s["started"] for s in overview["recent"]]
    assert started == sorted(started) and overview["recent"][-1]["pod"] == "shop-1-a"
    slow = [s["time"] for s in overview["slowest"]]
    assert len(slow) == SLOWEST and slow == sorted(slow, reverse=True) and slow[0] == 299.0


def test_a_pods_routes_are_capped_to_its_busiest_and_the_app_list_stays_whole() -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    # Route /x{i} gets i + 1 exchanges, spread so the busiest are not simply the newest.
    samples = [sample(f"/x{i}", started=T0 + 50 + (i * 7 + n) % 40) for i in range(30) for n in range(i + 1)]
    post(store, stats_body("shop-1-a", samples, raw=0))
    post(store, stats_body("shop-2-b", [sample("/x0", started=T0 + 60)], raw=0))
    overview = store.overview()
    busy, quiet = overview["pods"]
    assert POD_ROUTES == 10 and busy["route_count"] == 30 and len(busy["routes"]) == 10
    assert [r["route"] for r in busy["routes"]] == [f"/x{i}" for i in range(29, 19, -1)]
    assert [r["count"] for r in busy["routes"]] == list(range(30, 20, -1))
    assert quiet["route_count"] == 1 and [r["route"] for r in quiet["routes"]] == ["/x0"]
    app_routes = {r["route"]: r["count"] for r in overview["routes"]}
    assert len(app_routes) == 30 and app_routes["/x0"] == 2 and app_routes["/x29"] == 30


def test_slowest_looks_back_five_minutes_only() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    post(store, stats_body("a-1-x", [sample(ms=5000.0, started=T0 + 1)]))
    clock.advance(120)
    post(store, stats_body("a-1-x", [sample(ms=20.0, started=T0 + 125)]))
    assert [s["time"] for s in store.slowest(clock())] == [5000.0, 20.0]
    clock.advance(300)
    store.tick()
    assert [s["time"] for s in store.slowest(clock())] == [20.0]


def test_series_rejects_unknown_scopes_and_windows() -> None:
    store = make_store(FakeClock(T0 + 10))
    post(store, stats_body("a-1-x", [sample(started=T0 + 5)]))
    assert store.series("pod:nope", 300) is None
    assert store.series("app:a", 42) is None
    assert store.series("bogus", 300) is None
    series = store.series("all", 900)
    assert series is not None and series["step"] == 5 and len(series["t"]) == 180
    tail = store.series("all", 300, tail=30)
    assert tail is not None and len(tail["t"]) == 30 and tail["window"] == 300


def test_the_overview_past_overview_pods_sends_the_busiest_and_says_how_many_more() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock, overview_pods=2)
    for i, n in enumerate((1, 5, 3, 4)):
        post(store, stats_body(f"p{i}-1-x", [sample(started=T0 + 1)] * n, app="shop"))
    overview = store.overview()
    assert [p["pod"] for p in overview["pods"]] == ["p1-1-x", "p3-1-x"] and overview["omitted_pods"] == 2
    assert overview["totals"]["pods"] == 4
    (app,) = overview["apps"]
    assert len(app["pods"]) == 2 and app["pod_count"] == 4
