"""`PodStore` as pure code: counting, dedup, staleness, resources, read models, drain/restore."""

from __future__ import annotations

from typing import Any

import pytest
import ujson

from app.core.histogram import Histogram
from app.core.wire import parse_resources, parse_stats
from app.dashboard.aggregate import RECENT_FLUSH, Restored, StoreFull
from app.dashboard.batchids import BATCH_IDS, digest
from app.dashboard.buckets import BucketRow
from app.dashboard.pods import RECENT_PER_POD
from tests.dashboard_support import T0, FakeClock, make_store, post, resource_body, sample, stats_body


def test_counts_come_from_the_summary_not_the_capped_raw_samples() -> None:
    clock = FakeClock(T0 + 20)
    store = make_store(clock)
    samples = [sample(started=T0 + 1 + i % 5, ms=float(i % 50 + 1)) for i in range(1000)]
    ack = post(store, stats_body("shop-1-a", samples, raw=50, batch="b1"))
    assert not ack.duplicate and ack.samples == 50 and ack.exchanges == 1000
    (entry,) = store.stats_list()
    assert entry["count"] == 1000 and entry["total"] == 1000
    assert len(entry["stats"]) == RECENT_PER_POD and entry["stats"] == samples[-RECENT_PER_POD:]


def test_article_payload_is_counted_from_its_samples() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    body = {"pod": "j-slow-9-5rt8f", "stats": [
        {"endpoint": "/slow?id=3", "method": "GET", "response": {"status": "200", "message": "OK"},
         "time": 1200, "started": (T0 + 2) * 1000},
        {"endpoint": "/slow", "method": "GET", "response": {"status": "502", "message": "Bad Gateway"},
         "time": 3, "started": (T0 + 3) * 1000}]}
    post(store, body)
    overview = store.overview()
    (app,) = overview["apps"]
    assert app["app"] == "j-slow" and app["pods"] == ["j-slow-9-5rt8f"]
    (route,) = overview["routes"]
    assert route["route"] == "/slow" and route["count"] == 2 and route["errors"] == 1
    assert overview["recent"][0]["endpoint"] == "/slow"  # query string dropped


def test_percentiles_across_pods_come_from_merged_histograms() -> None:
    clock = FakeClock(T0 + 30)
    store = make_store(clock)
    fast = [sample(ms=10.0, started=T0 + 10) for _ in range(900)]
    slow = [sample(ms=1000.0, started=T0 + 10) for _ in range(100)]
    post(store, stats_body("shop-1-a", fast, raw=0))
    post(store, stats_body("shop-2-b", slow, raw=0))
    both = Histogram()
    for s in fast + slow:
        both.add(s["time"])
    totals = store.overview()["totals"]
    assert totals["p50"] == round(both.quantile(0.5), 3)  # type: ignore[arg-type]
    assert totals["p99"] == round(both.quantile(0.99), 3)  # type: ignore[arg-type]
    assert totals["p99"] > 900  # averaging per-pod p99s (10 and 1000) would say 505
    pods = {p["pod"]: p for p in store.overview()["pods"]}
    assert pods["shop-1-a"]["p99"] == 10.0 and pods["shop-2-b"]["p50"] == 1000.0


def test_a_batch_id_seen_before_is_acknowledged_once_and_not_counted_twice() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    body = stats_body("shop-1-a", [sample(started=T0 + 1)] * 5, batch="abc")
    assert not post(store, body).duplicate
    before = store.overview()
    assert post(store, body).duplicate
    after = store.overview()
    assert after["totals"] == before["totals"] and len(after["recent"]) == len(before["recent"]) == 5
    assert store.duplicates == 1
    # The id memory is bounded: the oldest ids are forgotten first.
    for i in range(BATCH_IDS):
        post(store, stats_body("shop-1-a", [], batch=f"id-{i}"))
    assert len(store.pods["shop-1-a"].batches) == BATCH_IDS
    assert not post(store, body).duplicate


def test_ids_are_per_pod() -> None:
    store = make_store(FakeClock(T0 + 10))
    assert not post(store, stats_body("a-1-x", [sample(started=T0)], batch="1")).duplicate
    assert not post(store, stats_body("b-1-x", [sample(started=T0)], batch="1")).duplicate


def test_stale_after_silence_dropped_later_and_a_returning_pod_continues() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    post(store, stats_body("shop-1-a", [sample(started=T0 + 5)] * 3))
    store.ingest_resources(parse_resources(resource_body("shop-1-a", memory=100.0)))
    store.ingest_resources(parse_resources(resource_body("shop-2-b", memory=50.0)))
    clock.advance(10)
    store.ingest_resources(parse_resources(resource_body("shop-2-b", memory=50.0)))
    clock.advance(6)  # shop-1-a silent for 16 s > 15
    store.tick()
    pods = {p["pod"]: p for p in store.overview()["pods"]}
    assert pods["shop-1-a"]["stale"] and not pods["shop-2-b"]["stale"]
    assert store.overview()["apps"][0]["memory"] == 50  # a stale pod's memory is not the app's any more
    assert store.counts() == (1, 1)
    assert store.resources_list()[0]["stale"]

    store.ingest_resources(parse_resources(resource_body("shop-1-a", memory=100.0)))  # back
    pods = {p["pod"]: p for p in store.overview()["pods"]}
    assert not pods["shop-1-a"]["stale"] and store.pods["shop-1-a"].total == 3
    assert store.overview()["apps"][0]["memory"] == 150

    clock.advance(601)
    store.tick()
    assert store.pods == {} and store.overview()["pods"] == [] and store.overview()["apps"] == []
    assert store.drain().dropped_pods == ["shop-1-a", "shop-2-b"]


def test_resources_prefer_the_container_and_add_up_per_app() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    store.ingest_resources(parse_resources(resource_body("shop-1-a", cpu=20.0, memory=100.0, limit=1000.0)))
    store.ingest_resources(parse_resources(resource_body("shop-2-b", cpu=40.0, memory=300.0, limit=1000.0)))
    overview = store.overview()
    (app,) = overview["apps"]
    assert app["cpu"] == 30.0 and app["memory"] == 400 and app["memory_limit"] == 2000
    pod = next(p for p in overview["pods"] if p["pod"] == "shop-1-a")
    assert pod["cpu"] == 20.0 and pod["memory"] == 100 and pod["memory_limit"] == 1000 and pod["cores"] == [40, 60]
    # A report with no container numbers: the node's, as the article had it.
    store.ingest_resources(parse_resources({"pod": "shop-3-c", "resource": {
        "free_memory": 3e9, "total_memory": 8e9, "cpus": [], "cpu_percent": 12.5}}))
    pod = next(p for p in store.overview()["pods"] if p["pod"] == "shop-3-c")
    assert pod["cpu"] == 12.5 and pod["memory"] == 5e9 and pod["memory_limit"] == 8e9
    clock.advance(1)
    store.tick()  # the app's series gets one reading per tick from the live pods
    series = store.series("app:shop", 300)
    assert series is not None and series["memory"][-1] == 100 + 300 + 5e9
    assert series["cpu"][-1] == round((20 + 40 + 12.5) / 3, 2)
    pod_series = store.series("pod:shop-2-b", 300)
    assert pod_series is not None and pod_series["memory_limit"] == 1000.0


def test_recent_per_pod_is_bounded_and_oldest_first() -> None:
    store = make_store(FakeClock(T0 + 10))
    for i in range(3):
        post(store, stats_body("a-1-x", [sample(ms=float(i * 100 + k), started=T0 + 1) for k in range(40)]))
    (entry,) = store.stats_list()
    times = [s["time"] for s in entry["stats"]]
    assert len(times) == RECENT_PER_POD and times == sorted(times) and times[-1] == 239.0


def test_dropped_samples_reported_by_sidecars_add_up() -> None:
    store = make_store(FakeClock(T0 + 10))
    post(store, stats_body("a-1-x", [sample(started=T0)], dropped=7))
    post(store, stats_body("a-1-x", [sample(started=T0)], dropped=5))
    assert store.overview()["totals"]["dropped"] == 12 and store.overview()["pods"][0]["dropped"] == 12


def test_a_pod_that_changes_app_moves() -> None:
    store = make_store(FakeClock(T0 + 10))
    store.ingest_resources(parse_resources(resource_body("p-1-x")))
    post(store, stats_body("p-1-x", [sample(started=T0)], app="other"))
    assert [a["app"] for a in store.overview()["apps"]] == ["other"]


@pytest.mark.parametrize("flush_every", [1, 7])
def test_drain_and_restore_rebuild_the_same_views(flush_every: int) -> None:
    clock = FakeClock(T0 + 1)
    store = make_store(clock)
    rows: dict[tuple[str, int, int], BucketRow] = {}
    routes: dict[str, dict[str, Any]] = {}
    pods: dict[str, dict[str, Any]] = {}
    samples: dict[str, Any] | None = None
    recent: dict[str, Any] = {}
    batch_ids: dict[str, list[str | bytes]] = {}

    def flush(final: bool = False) -> None:
        nonlocal samples
        changes = store.drain(final)
        rows.update({(s, step, t): d for s, step, t, d in changes.buckets})
        routes.update(dict(changes.routes))
        pods.update(dict(changes.pods))
        recent.update(dict(changes.recent))
        for pod, batch, _ in changes.batch_ids:
            batch_ids.setdefault(pod, []).append(batch)
        samples = changes.samples if changes.samples is not None else samples

    for second in range(120):
        clock.now = T0 + second
        if second % 5 == 0:
            post(store, stats_body(f"shop-{second % 3}-x", [sample(ms=float(second), started=T0 + second - 1)] * 4,
                                   batch=str(second)))
        store.ingest_resources(parse_resources(resource_body("shop-1-x", cpu=float(second))))
        store.tick()
        if second % flush_every == 0:
            flush()
    flush(final=True)
    restored = make_store(clock)
    # As history keeps them: route tables and recent lists as JSON text.
    restored.restore(Restored(buckets=[(*k, d) for k, d in rows.items()],
                              routes=[(scope, ujson.dumps(data)) for scope, data in routes.items()],
                              pods=list(pods.items()), samples=samples,
                              recent={pod: v if isinstance(v, str) else ujson.dumps(v) for pod, v in recent.items()},
                              batch_ids=batch_ids))
    assert restored.overview() == store.overview()
    assert restored.stats_list() == store.stats_list()
    assert restored.series("all", 300) == store.series("all", 300)
    assert restored.series("app:shop", 3600) == store.series("app:shop", 3600)
    # Pods' one-second buckets are not kept: before the restart their step-1 series spread coarse slots.
    before, after = store.series("pod:shop-1-x", 300), restored.series("pod:shop-1-x", 300)
    assert before is not None and after is not None and after != before
    assert sum(v or 0 for v in after["rps"]["2xx"]) == pytest.approx(sum(v or 0 for v in before["rps"]["2xx"]))
    # Batch ids survive too: a retried batch is still a duplicate.
    assert restored.ingest_stats(parse_stats(stats_body("shop-0-x", [sample()], batch="15"))).duplicate


def test_a_batch_id_goes_to_history_with_its_counts_and_its_pod() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    store.drain()  # nothing yet; the pods' own rows now wait POD_FLUSH seconds
    post(store, stats_body("new-1-x", [sample(started=T0 + 9)] * 3, batch="b-1"))
    clock.advance(1)
    changes = store.drain()
    assert [(pod, batch) for pod, batch, _ in changes.batch_ids] == [("new-1-x", digest("b-1"))]  # as kept
    assert [name for name, _ in changes.pods] == ["new-1-x"]  # so a restore can attach the id
    assert {scope for scope, *_ in changes.buckets} >= {"pod:new-1-x", "app:new", "all"}
    assert sum(row[0] for scope, step, _, row in changes.buckets if scope == "all" and step == 5) == 3
    assert not store.drain().batch_ids  # written once


def test_pods_recent_lists_go_to_history_every_recent_flush_and_at_the_last_write() -> None:
    clock = FakeClock(T0 + 10)
    store = make_store(clock)
    post(store, stats_body("shop-1-x", [sample(started=T0 + 9)] * 3, batch="a"))
    clock.advance(31)
    changes = store.drain()
    assert changes.routes and changes.samples is not None and not changes.recent  # routes: every SLOW_FLUSH
    clock.advance(RECENT_FLUSH - 31)
    # One batch's samples go as the text they are kept in; several, as a list.
    assert [(pod, len(ujson.loads(text))) for pod, text in store.drain().recent] == [("shop-1-x", 3)]
    post(store, stats_body("shop-1-x", [sample(started=T0 + 130)], batch="b"))
    assert [(pod, len(samples)) for pod, samples in store.drain(final=True).recent] == [("shop-1-x", 4)]


def grpc_call(path: str, code: int | None, status: int, started: float, ms: float = 4.0) -> dict[str, Any]:
    return {**sample(path, status=status, started=started, ms=ms, method="POST"), "route": path,
            "protocol": "grpc", "grpc_status": code, "grpc_message": "" if code == 0 else "no"}


def test_the_routes_table_shows_protocols_and_grpc_codes_and_pod_cards_do_not() -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    calls = [grpc_call("/shop.v1.Orders/Get", code, status, T0 + 50 + i % 30)
             for i, (code, status) in enumerate([(0, 200)] * 6 + [(5, 404)] * 3 + [(14, 503)] * 2 + [(None, 0)])]
    both = [{**sample("/users/1", started=T0 + 60), "protocol": p} for p in ("http/1.1", "h2", "h2")]
    tls = {**sample("api.example.com", started=T0 + 61, ms=60_000.0), "route": "api.example.com",
           "method": "TLS", "response": {"status": 0, "message": ""}, "protocol": "tls"}
    old = sample("/old", started=T0 + 62)  # a sidecar from before protocols: no protocol said
    post(store, stats_body("shop-1-a", [*calls, *both, tls, old]))
    overview = store.overview()
    rows = {r["route"]: r for r in overview["routes"]}
    get = rows["/shop.v1.Orders/Get"]
    assert (get["protocol"], get["count"], get["errors"]) == ("grpc", 12, 2)  # UNAVAILABLE is 503: a failure
    assert get["grpc"] == {"0": 6, "5": 3, "14": 2}  # the call without a status is in count only
    assert rows["/users/{id}"]["protocol"] == "h2, http/1.1" and "grpc" not in rows["/users/{id}"]
    assert rows["api.example.com"]["protocol"] == "tls" and rows["api.example.com"]["method"] == "TLS"
    assert rows["/old"]["protocol"] == ""
    # A pod card's rows stay as they were: every live update carries them.
    (pod,) = overview["pods"]
    assert all("protocol" not in r and "grpc" not in r for r in pod["routes"])
    # The raw samples keep their fields; an opaque connection is never a "slow exchange".
    assert {s.get("protocol") for s in overview["recent"]} == {"grpc", "http/1.1", "h2", "tls", None}
    assert overview["slowest"] and all(s.get("protocol") != "tls" for s in overview["slowest"])
    assert any(s.get("grpc_status") == 5 for s in overview["recent"])


def test_route_protocols_and_grpc_codes_survive_a_restart_and_leave_with_their_slots() -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    post(store, stats_body("shop-1-a", [grpc_call("/a.B/C", 5, 404, T0 + 60), grpc_call("/a.B/C", 0, 200, T0 + 61)]))
    changes = store.drain(final=True)
    restored = make_store(clock)
    restored.restore(Restored(buckets=changes.buckets, routes=[(s, ujson.dumps(d)) for s, d in changes.routes],
                              pods=changes.pods, samples=changes.samples))
    assert restored.overview()["routes"] == store.overview()["routes"]
    (row,) = restored.overview()["routes"]
    assert (row["protocol"], row["grpc"]) == ("grpc", {"0": 1, "5": 1})
    clock.advance(200)  # the slots leave the window and are evicted; the protocol stays with the route
    for scope in (store.all, *(a.scope for a in store.apps.values())):
        scope.evict(clock(), store.retention)
    (row,) = store.overview()["routes"]
    assert row["count"] == 0 and row["grpc"] == {} and row["protocol"] == "grpc"


# --- bounds: pods, apps, what the page is sent (issue 16) --------------------------------------------------


def test_past_max_pods_a_stale_pod_makes_room_else_the_report_is_refused_and_changes_nothing() -> None:
    clock = FakeClock(T0)
    store = make_store(clock, max_pods=3)
    for name in ("a-1-x", "b-1-x", "c-1-x"):
        store.ingest_resources(parse_resources(resource_body(name)))
    version = store.version
    with pytest.raises(StoreFull, match="--max-pods") as refused:
        post(store, stats_body("d-1-x", [sample(started=T0)]))
    assert refused.value.reason == "too_many_pods" and store.version == version and "d-1-x" not in store.pods
    clock.advance(10)
    store.ingest_resources(parse_resources(resource_body("a-1-x")))  # a stays fresh
    clock.advance(10)
    store.tick()  # b and c are stale now
    post(store, stats_body("d-1-x", [sample(started=T0 + 20)]))
    assert set(store.pods) == {"a-1-x", "c-1-x", "d-1-x"} and store.evicted == 1  # the stalest went first
    assert store.drain().dropped_pods == ["b-1-x"]  # and history is told


def test_past_max_apps_podless_apps_go_first_else_refused() -> None:
    clock = FakeClock(T0)
    store = make_store(clock, max_apps=2)
    post(store, stats_body("a-1-x", [sample(started=T0)], app="a"))
    post(store, stats_body("b-1-x", [sample(started=T0)], app="b"))
    with pytest.raises(StoreFull, match="--max-apps"):
        post(store, stats_body("c-1-x", [sample(started=T0)], app="c"))
    with pytest.raises(StoreFull):  # moving a pod to a new app is bounded too
        post(store, stats_body("a-1-x", [sample(started=T0)], app="c"))
    assert store.pods["a-1-x"].app == "a"
    clock.advance(700)
    store.tick()  # both pods dropped; their apps keep history only
    post(store, stats_body("c-1-x", [sample(started=T0 + 700)], app="c"))
    assert "c" in store.apps and len(store.apps) <= 2
