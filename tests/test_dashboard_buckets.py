"""Buckets (`app.dashboard.buckets`): rows for history, frozen bytes, series points."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from app.core.histogram import OVERFLOW
from app.dashboard.buckets import (
    Bucket,
    freeze,
    freeze_point,
    thaw,
    thaw_point,
)
from app.dashboard.delta import TrafficDelta
from app.dashboard.packed import pack_pairs, pack_status
from tests.dashboard_support import T0, cells_for, random_cell, sample


def test_a_bucket_round_trips_through_its_row() -> None:
    delta = TrafficDelta(cells_for([sample(ms=3.0), sample(ms=300.0, status=404)]), T0 + 1, 3600)
    bucket = delta.seconds[int(T0)]
    bucket.add_resource(10.0, 20.0, 30.0)
    again = Bucket.from_row(bucket.to_row())
    assert again.to_row() == bucket.to_row()
    assert Bucket.from_row(Bucket().to_row()).to_row() == Bucket().to_row()


pairs = st.dictionaries(st.integers(0, OVERFLOW), st.integers(1, 10**12), max_size=30)


@given(pairs, st.dictionaries(st.sampled_from(["2xx", "4xx", "5xx", "none"]), st.integers(0, 10**9), max_size=4),
       st.integers(0, 10**12), st.floats(0, 1e9), st.booleans())
def test_freeze_and_thaw_round_trip(hist: dict[int, int], status: dict[str, int], nbytes: int, ms: float,
                                    with_resources: bool) -> None:
    bucket = Bucket()
    bucket.hist, bucket.status = pack_pairs(sorted(hist.items())), pack_status(status)
    bucket.count = sum(hist.values())
    if bucket.count:
        bucket.total, bucket.low, bucket.high = ms, ms / 2, ms
    bucket.bytes_in = bucket.bytes_out = nbytes
    if with_resources:
        bucket.add_resource(12.5, 1e9, 2e9)
    frozen = freeze(bucket)
    assert isinstance(frozen, bytes) and thaw(frozen).to_row() == bucket.to_row()


def test_a_frozen_bucket_keeps_each_count_in_as_few_bytes_as_it_needs() -> None:
    bucket = Bucket()
    bucket.hist = pack_pairs([[20, 3], [21, 255], [29, 1]])  # slots 20-29 kept, one byte each
    bucket.status, bucket.count = pack_status({"2xx": 200, "4xx": 59}), 259  # slots 0-3 (1xx to 4xx)
    bucket.total, bucket.low, bucket.high = 900.0, 1.0, 30.0
    small = freeze(bucket)
    bucket.hist += pack_pairs([[22, 300]])  # 300 needs two bytes a slot
    bucket.status, bucket.count = pack_status({"2xx": 500, "4xx": 59}), 559
    wider = freeze(bucket)
    assert len(wider) - len(small) == 10 + 4  # ten histogram slots and four status slots, a byte more each
    assert thaw(small).hist == pack_pairs([[20, 3], [21, 255], [29, 1]]) and thaw(wider).to_row() == bucket.to_row()


def test_a_series_point_keeps_what_a_series_reads_in_less() -> None:
    rng = random.Random(4)
    for _ in range(50):
        bucket = Bucket()
        bucket.merge(random_cell(rng))
        if rng.random() < 0.7:
            bucket.add_resource(rng.uniform(0, 100), rng.uniform(1e6, 1e9), rng.choice([None, 2e9]))
        point = thaw_point(freeze_point(bucket))
        assert (point.count, point.status, point.hist, point.cpu, point.memory, point.mem_limit) == (
            bucket.count, bucket.status, bucket.hist, bucket.cpu, bucket.memory, bucket.mem_limit)
        assert (point.low, point.high) == ((bucket.low, bucket.high) if bucket.count else (math.inf, 0.0))
        assert len(freeze_point(bucket)) == len(freeze(bucket)) - 40
