"""Buckets (`app.dashboard.buckets`): rows for history, frozen bytes, route windows."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from app.core.histogram import OVERFLOW
from app.dashboard.buckets import (
    Bucket,
    RouteStat,
    Traffic,
    Window,
    freeze,
    freeze_point,
    read_cell,
    thaw,
    thaw_point,
)
from app.dashboard.delta import TrafficDelta
from app.dashboard.jsontext import dumps
from app.dashboard.packed import pack_pairs, pack_status
from tests.dashboard_support import T0, cells_for, sample

pairs = st.dictionaries(st.integers(0, OVERFLOW), st.integers(1, 10**12), max_size=30)


def test_bucket_and_route_json_round_trip() -> None:
    delta = TrafficDelta(cells_for([sample(ms=3.0), sample(ms=300.0, status=404)]), T0 + 1, 3600)
    bucket = delta.seconds[int(T0)]
    bucket.add_resource(10.0, 20.0, 30.0)
    again = Bucket.from_row(bucket.to_row())
    assert again.to_row() == bucket.to_row()
    assert Bucket.from_row(Bucket().to_row()).to_row() == Bucket().to_row()
    stat = RouteStat()
    for (_, _, t5), cell in delta.routes.items():
        stat.add(t5, cell, 123.0)
    assert RouteStat.from_json(stat.to_json()).to_json() == stat.to_json()
    start = int(T0) - int(T0) % 5
    assert RouteStat.from_json(stat.to_json()).window(start, start + 60, 5).numbers() == stat.window(
        start, start + 60, 5).numbers()


def test_a_route_written_before_cells_were_frozen_reads_the_same() -> None:
    cell = _random_cell(random.Random(2))
    old = {"total": cell.count, "last_seen": 5.0, "cells": {"1000": {
        "c": cell.count, "s": format(cell.status, "x"), "f": cell.failures, "h": format(cell.hist, "x"),
        "sum": cell.total, "min": cell.low, "max": cell.high, "bi": cell.bytes_in, "bo": cell.bytes_out}}}
    stat, again = RouteStat.from_json(old), RouteStat()
    again.add(1000, cell, 5.0)
    assert stat.window(1000, 1060, 5).numbers() == again.window(1000, 1060, 5).numbers()
    assert len(dumps(stat.to_json())) < len(dumps(old)) / 3  # frozen, in base64: a fraction of the old text


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


def _random_cell(rng: random.Random) -> Traffic:
    cell = Traffic()
    cell.count = rng.randint(0, 40)
    if cell.count:
        cell.failures = rng.randint(0, cell.count)
        cell.status = pack_status({"2xx": cell.count - cell.failures, "5xx": cell.failures})
        cell.hist = pack_pairs([[rng.randint(0, OVERFLOW), 1] for _ in range(cell.count)])
        cell.low = rng.lognormvariate(1, 1)
        cell.high = cell.low + rng.lognormvariate(2, 1.5)
        cell.total = cell.count * (cell.low + cell.high) / 2 * rng.uniform(0.9, 1.1)
        cell.bytes_in, cell.bytes_out = rng.randint(0, 10**6), rng.randint(0, 10**9)
    return cell


def _recounted(stat: RouteStat, start: int, end: int) -> Window:
    """A route's window summed afresh; its total exactly summed (the running one is)."""
    out = Window(end - start)
    cells = [read_cell(cell) for t5, cell in stat.cells.items() if start <= t5 < end]
    for cell in cells:
        out.merge(cell)
    out.total = math.fsum(cell.total for cell in cells if cell.count)
    return out


def _fields(window: Window) -> tuple[object, ...]:
    return (window.count, window.status, window.failures, window.hist, window.total, window.low, window.high,
            window.bytes_in, window.bytes_out, window.seconds)


def test_a_routes_running_window_equals_one_summed_afresh_its_settled_cells_frozen() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        stat, now = RouteStat(), int(T0)
        for _ in range(400):
            now += rng.choice([1, 1, 2, 5, 7, 60, 200])  # mostly a second or a few, sometimes a silence
            for _ in range(rng.randint(0, 3)):
                t = now - rng.choice([0, 1, 3, 6, 12, 40, 70, 300]) + rng.choice([0, 0, 0, 30])  # late, and ahead
                stat.add(t - t % 5, _random_cell(rng), t * 1000.0)
            end = now - now % 5 - rng.choice([0, 0, 0, 5, 15])  # a scope's phase; a read now and then late
            start = end - 60
            if rng.random() < 0.3:
                stat.evict(start - rng.choice([5, 10, -5]))
                stat.freeze_before(end - rng.choice([10, 30, 0]), 5)  # settled cells frozen; late ones thaw them
            if rng.random() < 0.7:
                assert _fields(stat.window(start, end, 5)) == _fields(_recounted(stat, start, end)), (seed, now)
                assert stat.window(start, end, 5).numbers() == _recounted(stat, start, end).numbers()


def test_a_series_point_keeps_what_a_series_reads_in_less() -> None:
    rng = random.Random(4)
    for _ in range(50):
        bucket = Bucket()
        bucket.merge(_random_cell(rng))
        if rng.random() < 0.7:
            bucket.add_resource(rng.uniform(0, 100), rng.uniform(1e6, 1e9), rng.choice([None, 2e9]))
        point = thaw_point(freeze_point(bucket))
        assert (point.count, point.status, point.hist, point.cpu, point.memory, point.mem_limit) == (
            bucket.count, bucket.status, bucket.hist, bucket.cpu, bucket.memory, bucket.mem_limit)
        assert (point.low, point.high) == ((bucket.low, bucket.high) if bucket.count else (math.inf, 0.0))
        assert len(freeze_point(bucket)) == len(freeze(bucket)) - 40
