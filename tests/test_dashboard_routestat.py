"""A route's last minute (`app.dashboard.routestat`): its running window, frozen cells, history's form."""

from __future__ import annotations

import math
import random

from app.dashboard.buckets import Window, read_cell
from app.dashboard.delta import TrafficDelta
from app.dashboard.jsontext import dumps
from app.dashboard.routestat import RouteStat
from tests.dashboard_support import T0, cells_for, random_cell, sample


def test_a_route_round_trips_through_its_json() -> None:
    delta = TrafficDelta(cells_for([sample(ms=3.0), sample(ms=300.0, status=404)]), T0 + 1, 3600)
    stat = RouteStat()
    for (_, _, t5), cell in delta.routes.items():
        stat.add(t5, cell, 123.0)
    assert RouteStat.from_json(stat.to_json()).to_json() == stat.to_json()
    start = int(T0) - int(T0) % 5
    assert RouteStat.from_json(stat.to_json()).window(start, start + 60, 5).numbers() == stat.window(
        start, start + 60, 5).numbers()


def test_a_route_written_before_cells_were_frozen_reads_the_same() -> None:
    cell = random_cell(random.Random(2))
    old = {"total": cell.count, "last_seen": 5.0, "cells": {"1000": {
        "c": cell.count, "s": format(cell.status, "x"), "f": cell.failures, "h": format(cell.hist, "x"),
        "sum": cell.total, "min": cell.low, "max": cell.high, "bi": cell.bytes_in, "bo": cell.bytes_out}}}
    stat, again = RouteStat.from_json(old), RouteStat()
    again.add(1000, cell, 5.0)
    assert stat.window(1000, 1060, 5).numbers() == again.window(1000, 1060, 5).numbers()
    assert len(dumps(stat.to_json())) < len(dumps(old)) / 3  # frozen, in base64: a fraction of the old text


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
                stat.add(t - t % 5, random_cell(rng), t * 1000.0)
            end = now - now % 5 - rng.choice([0, 0, 0, 5, 15])  # a scope's phase; a read now and then late
            start = end - 60
            if rng.random() < 0.3:
                stat.evict(start - rng.choice([5, 10, -5]))
                stat.freeze_before(end - rng.choice([10, 30, 0]), 5)  # settled cells frozen; late ones thaw them
            if rng.random() < 0.7:
                assert _fields(stat.window(start, end, 5)) == _fields(_recounted(stat, start, end)), (seed, now)
                assert stat.window(start, end, 5).numbers() == _recounted(stat, start, end).numbers()
