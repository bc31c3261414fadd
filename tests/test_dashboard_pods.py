"""Per-pod and per-app state (`app.dashboard.pods`): running resource totals, a pod's row round trip."""

from __future__ import annotations

from app.core.wire import ResourcePoint
from app.dashboard.pods import BATCH_IDS, NO_POINT, Pod, ResourceTotals
from tests.dashboard_support import T0, sample


def test_resource_totals_add_and_take_away() -> None:
    totals = ResourceTotals()
    a = ResourcePoint(cpu=10.0, memory=100.0, memory_limit=1000.0, cores=None)
    b = ResourcePoint(cpu=30.0, memory=300.0, memory_limit=None, cores=None)
    totals.add(a)
    assert (totals.cpu, totals.memory, totals.memory_limit) == (10.0, 100, 1000)
    totals.add(b)
    assert (totals.cpu, totals.memory, totals.memory_limit) == (20.0, 400, None)  # one limit unknown: no sum
    totals.add(a, -1)
    totals.add(NO_POINT)
    assert (totals.cpu, totals.memory, totals.memory_limit, totals.pods) == (30.0, 300, None, 2)
    totals.add(b, -1)
    totals.add(NO_POINT, -1)
    assert (totals.cpu, totals.memory, totals.memory_limit, totals.pods) == (None, None, None, 0)


def test_a_pod_row_round_trips_and_keeps_the_newest_ids() -> None:
    pod = Pod("shop-1-x", "shop", T0)
    pod.resource = {"container": {"cpu_limit_cores": 2.0, "cpu_percent": 5.0,
                                  "memory_usage": 10.0, "memory_limit": 20.0}}
    pod.dropped, pod.total, pod.seen, pod.namespace = 3, 40, T0 + 9, "shop-prod"
    recent = [sample(ms=float(i)) for i in range(5)]
    ids = [str(i) for i in range(BATCH_IDS + 10)]
    again = Pod.from_json("shop-1-x", pod.to_json(), recent, ids)
    assert again.to_json() == pod.to_json()
    assert list(again.recent) == recent and list(again.batches) == ids[-BATCH_IDS:]
    assert again.point.cpu == 5.0 and again.point.memory_limit == 20.0
    assert again.namespace == "shop-prod"


def test_a_row_written_before_namespaces_were_kept_reads_back_without_one() -> None:
    older = Pod("shop-1-x", "shop", T0).to_json()
    del older["namespace"]
    assert Pod.from_json("shop-1-x", older, [], []).namespace == ""
