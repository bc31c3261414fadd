"""`app.dashboard.series`: a series' times and columns, and a trend's columns moved on as text."""

from __future__ import annotations

import random

from app.dashboard.buckets import Bucket
from app.dashboard.series import TREND_POINTS, series_columns, series_times, shift_column, trend_columns


def test_series_times_end_with_the_step_now_is_in() -> None:
    assert series_times(1000.5, 10, 5) == [995, 1000]
    assert series_times(1003.0, 10, 5) == [995, 1000]
    assert len(series_times(1_760_000_000, 3600, 10)) == 360


def test_series_columns_rates_percentiles_and_resources() -> None:
    bucket = Bucket()
    bucket.count, bucket.status, bucket.low, bucket.high, bucket.hist = 10, 10 << 64, 2.0, 2.0, 10 << (64 * 40)
    bucket.add_resource(50.0, 1e6, 2e6)
    out = series_columns([0, 5], [(bucket, 5), (None, 5)])
    assert out["rps"]["2xx"] == [2.0, None] and out["rps"]["5xx"] == [0.0, None]
    assert out["p50"] == [2.0, None] and out["cpu"] == [50.0, None] and out["memory_limit"] == 2e6


def test_a_column_moved_on_equals_one_rebuilt() -> None:
    rng = random.Random(5)
    values = [str(i) for i in range(TREND_POINTS)]
    column = ",".join(values)
    for _ in range(300):
        moved = rng.choice([0, 0, 1, 1, 2, 5, TREND_POINTS - 1])
        keep = rng.randint(0, TREND_POINTS - moved)
        new = [str(rng.randint(0, 999)) for _ in range(TREND_POINTS - keep)]
        values = values[moved:moved + keep] + new
        column = shift_column(column, moved, keep, new)
        assert column == ",".join(values)
    text = '{"rps":[1,2],"p95":[null,3.5],"cpu":[4],"memory":[]}'
    assert trend_columns(text) == ["1,2", "null,3.5", "4", ""]
