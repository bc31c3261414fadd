"""Per-pod and per-app state (`app.dashboard.pods`): running resource totals, a pod's row, its recent exchanges."""

from __future__ import annotations

import ujson

from app.core.wire import ResourcePoint
from app.dashboard.batchids import BATCH_IDS, digest
from app.dashboard.jsontext import dumps
from app.dashboard.pods import NO_POINT, RECENT_PER_POD, Pod, ResourceTotals
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
    again = Pod.from_json("shop-1-x", pod.to_json(), ujson.dumps(recent), ids)
    assert again.to_json() == pod.to_json()
    assert again.recent.snapshot() == ujson.dumps(recent)  # kept as text until read: passed back as it came
    assert list(again.recent) == recent and len(again.batches) == BATCH_IDS
    assert all(i in again.batches for i in ids[-BATCH_IDS:]) and not any(i in again.batches for i in ids[:10])
    # History keeps digests; a file from before kept the ids as text: both come back the same.
    digests = Pod.from_json("shop-1-x", pod.to_json(), None, [digest(i) for i in ids])
    assert all(i in digests.batches for i in ids[-BATCH_IDS:]) and "0" not in digests.batches
    assert again.point.cpu == 5.0 and again.point.memory_limit == 20.0
    assert again.namespace == "shop-prod"


def test_a_row_written_before_namespaces_were_kept_reads_back_without_one() -> None:
    older = Pod("shop-1-x", "shop", T0).to_json()
    del older["namespace"]
    assert Pod.from_json("shop-1-x", older, None, []).namespace == ""


def test_restored_recent_exchanges_come_before_new_ones_and_are_bounded() -> None:
    restored = [sample(ms=float(i)) for i in range(RECENT_PER_POD)]
    pod = Pod.from_json("p-1-x", Pod("p-1-x", "p", T0).to_json(), ujson.dumps(restored), [])
    pod.recent.extend([sample(ms=100.0), sample(ms=101.0)])
    assert [s["time"] for s in pod.recent] == [float(i) for i in range(2, RECENT_PER_POD)] + [100.0, 101.0]
    # A batch of RECENT_PER_POD or more replaces the restored text without decoding it.
    pod = Pod.from_json("p-1-x", Pod("p-1-x", "p", T0).to_json(), "not json: never read", [])
    pod.recent.extend([sample(ms=float(i)) for i in range(RECENT_PER_POD + 1)])
    assert len(pod.recent) == RECENT_PER_POD and pod.recent.snapshot() == dumps(
        [sample(ms=float(i)) for i in range(1, RECENT_PER_POD + 1)])  # one batch: its text as it is


def test_recent_exchanges_across_small_batches_are_the_newest_in_order() -> None:
    pod = Pod("p-1-x", "p", T0)
    sent = []
    for batch in range(12):
        samples = [sample(ms=float(batch * 10 + k)) for k in range(batch % 4)]
        sent.extend(samples)
        pod.recent.extend(samples)
        assert list(pod.recent) == sent[-RECENT_PER_POD:]
    assert pod.recent.snapshot() == sent[-RECENT_PER_POD:]
