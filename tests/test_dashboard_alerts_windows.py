"""`AppWindows`: per-minute counts and each window's running sums, checked against sums made afresh."""

from __future__ import annotations

import random

from app.core.histogram import BOUNDS_MS, bucket_of
from app.dashboard.alerts.windows import LONGEST, SPANS, AppWindows, cell_counts, slow_index


def fresh_sums(minutes: dict[int, list[int]], now: int, span: int) -> list[int]:
    rows = [slot for minute, slot in minutes.items() if now - span < minute]
    return [sum(r[i] for r in rows) for i in range(3)]


def test_running_sums_match_sums_made_afresh() -> None:
    rng = random.Random(7)
    now = 1_000_000
    windows = AppWindows(now)
    truth: dict[int, list[int]] = {}
    for _ in range(3000):
        if rng.random() < 0.3:
            now += rng.choice((1, 1, 1, 2, 7, 90))  # mostly a minute at a time; now and then a gap
            windows.advance(now)
        minute = now - rng.randrange(0, 400)  # late cells too, some past the longest window
        total = rng.randrange(1, 50)
        failed, slow = rng.randrange(0, total + 1), rng.randrange(0, total + 1)
        windows.add(minute, total, failed, slow)
        if minute > now - LONGEST:
            slot = truth.setdefault(minute, [0, 0, 0])
            for i, v in enumerate((total, failed, slow)):
                slot[i] += v
        for span in SPANS:
            assert windows.window(span) == fresh_sums(truth, now, span), (span, now)
    assert min(windows.minutes) > now - LONGEST


def test_a_long_gap_empties_the_windows() -> None:
    windows = AppWindows(100)
    windows.add(100, 10, 5, 1)
    windows.advance(100 + LONGEST)
    assert all(windows.window(span) == [0, 0, 0] for span in SPANS) and windows.minutes == {}


def test_far_future_cells_are_ignored() -> None:
    windows = AppWindows(100)
    windows.add(100 + 60, 10, 0, 0)  # an hour ahead: a wrong clock
    windows.add(100 + 3, 10, 0, 0)  # a few minutes ahead: skew, kept
    assert windows.window(5) == [10, 0, 0]


def test_dump_and_load() -> None:
    windows = AppWindows(500)
    windows.add(498, 10, 2, 1)
    windows.add(500, 4, 0, 4)
    again = AppWindows.load([*windows.dump(), ["x"], [1, 2, 3, -4]], 500)
    assert again.minutes == windows.minutes and again.window(5) == [14, 2, 5]


def test_slow_means_surely_over_the_bound() -> None:
    index = slow_index(1000.0)
    assert BOUNDS_MS[index - 1] >= 1000.0 > BOUNDS_MS[index - 2]  # the first bucket lying wholly above
    exact = BOUNDS_MS[40]
    assert slow_index(exact) == 41  # a bound that is a bucket's edge: the buckets above it
    cell = {"t": 6000, "count": 6, "failures": 1, "hist": [[bucket_of(10.0), 3], [bucket_of(2500.0), 3]]}
    assert cell_counts(cell, slow_index(1000.0)) == (100, 6, 1, 3)
    assert cell_counts(cell, slow_index(5000.0)) == (100, 6, 1, 0)
