"""`app.core.histogram`: `bucket_of` (bisecting) gives exactly what the defining formula `bucket_by_log` gives."""

from __future__ import annotations

import math
import random

import pytest

from app.core.histogram import (
    _FIRSTS_ABOVE,
    BOUNDS_MS,
    LOWEST_MS,
    OVERFLOW,
    Histogram,
    bucket_by_log,
    bucket_of,
    bucket_range,
)


def around(x: float, ulps: int) -> list[float]:
    """x and the `ulps` floats on each side of it."""
    out = [x]
    down = up = x
    for _ in range(ulps):
        down, up = math.nextafter(down, -math.inf), math.nextafter(up, math.inf)
        out += [down, up]
    return out


def test_same_bucket_as_the_formula_at_every_edge() -> None:
    # Each bound, the formula's own switch points (its 1e-9 slack moves them a
    # little past the bounds), and many floats on either side of each.
    edges = list(BOUNDS_MS)
    edges += [b * (1 + 1e-9) for b in BOUNDS_MS] + [b * (1 - 1e-9) for b in BOUNDS_MS]
    for index in range(OVERFLOW):
        low, high = BOUNDS_MS[index] * 0.99, BOUNDS_MS[index] * 1.01
        while high - low > 1e-15 * high:
            middle = (low + high) / 2
            low, high = (low, middle) if bucket_by_log(middle) > index else (middle, high)
        edges.append(high)
    checked = 0
    for edge in edges:
        for x in around(edge, 300):
            assert bucket_of(x) == bucket_by_log(x), x
            checked += 1
    assert checked > 100_000


def test_same_bucket_as_the_formula_everywhere_else() -> None:
    rng = random.Random(7)
    values = [10 ** rng.uniform(-6, 9) for _ in range(200_000)]  # log-uniform over 15 decades
    values += [rng.uniform(0, 5) for _ in range(50_000)]
    values += [0.0, -0.0, -1.0, -1e300, LOWEST_MS, 1e300, 120_000.0, BOUNDS_MS[-1] * 1000]
    values += [float(n) for n in range(0, 130_000, 7)]
    for x in values:
        assert bucket_of(x) == bucket_by_log(x), x


def test_same_bucket_as_the_formula_on_either_side_of_every_edge() -> None:
    # Where bucket_of's guess from the logarithm must be moved: each bucket's first value above, the float
    # just below it, and the bound itself.
    edges = [*_FIRSTS_ABOVE, *BOUNDS_MS]
    for edge in edges:
        for x in (math.nextafter(edge, 0.0), edge, math.nextafter(edge, math.inf)):
            assert bucket_of(x) == bucket_by_log(x), x


def test_what_the_formula_refuses_is_refused_alike() -> None:
    for x in (math.inf, math.nan, 1.7e308):  # the last overflows ms / LOWEST_MS
        with pytest.raises((OverflowError, ValueError)) as formula:
            bucket_by_log(x)
        with pytest.raises(formula.type):
            bucket_of(x)


def test_a_bound_belongs_to_its_own_bucket_and_its_range() -> None:
    for index, bound in enumerate(BOUNDS_MS):
        assert bucket_of(bound) == index
        low, high = bucket_range(index)
        assert low < bound <= high
    assert bucket_of(BOUNDS_MS[-1] * 2) == OVERFLOW
    h = Histogram()
    for ms in (0.01, 1.0, 1.0, 250.0):
        h.add(ms)
    assert h.counts == {0: 1, bucket_of(1.0): 2, bucket_of(250.0): 1}
    assert (h.count, h.low, h.high, h.total) == (4, 0.01, 250.0, 252.01)
