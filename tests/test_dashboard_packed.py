"""Packed counts (`app.dashboard.packed`): additions that merge, and quantiles that match the shared histogram."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.core.histogram import OVERFLOW, Histogram
from app.dashboard.packed import pack_pairs, pack_status, quantiles, to_pairs, unpack_status

pairs = st.dictionaries(st.integers(0, OVERFLOW), st.integers(1, 10**12), max_size=30)


@given(pairs, pairs)
def test_packed_histograms_add_like_counts(a: dict[int, int], b: dict[int, int]) -> None:
    merged = dict(a)
    for index, n in b.items():
        merged[index] = merged.get(index, 0) + n
    packed = pack_pairs(sorted(a.items())) + pack_pairs(sorted(b.items()))
    assert to_pairs(packed) == [[i, n] for i, n in sorted(merged.items())]


def test_packed_status_round_trips() -> None:
    status = {"2xx": 7, "5xx": 2, "none": 1}
    assert unpack_status(pack_status(status)) == {"1xx": 0, "2xx": 7, "3xx": 0, "4xx": 0, "5xx": 2, "none": 1}


@given(st.lists(st.floats(0.01, 200_000.0), min_size=1, max_size=300))
def test_one_pass_quantiles_equal_the_shared_histograms(times: list[float]) -> None:
    expected = Histogram()
    for ms in times:
        expected.add(ms)
    packed = pack_pairs(sorted(expected.counts.items()))
    got = quantiles(packed, expected.count, expected.low, expected.high)
    assert got == tuple(round(expected.quantile(q), 3) for q in (0.5, 0.95, 0.99))  # type: ignore[arg-type]
